/*
 * The error codes shared by every module. An action returns 0 or one of
 * these (negative); only api/ turns them into HTTP statuses.
 */
#ifndef LIB_ERR_H
#define LIB_ERR_H

enum weft_err {
	WEFT_OK = 0,
	WEFT_EINVAL = -1,	/* bad input from outside */
	WEFT_ENOTFOUND = -2,
	WEFT_EUNAVAIL = -3,	/* a dependency (PostgreSQL) is unreachable */
	WEFT_EOVERLOAD = -4,	/* bounded queue or budget is full */
	WEFT_EIO = -5,		/* file or socket error */
	WEFT_ETOOBIG = -6,	/* input over a configured limit */
	WEFT_ECONFLICT = -7,	/* state does not allow the action */
	WEFT_ESCHEMA = -8,	/* database schema is not one we know */
	WEFT_EAUTH = -9,	/* missing or unknown credentials */
	WEFT_EFORBIDDEN = -10,	/* credentials valid, role insufficient */
	WEFT_ESHUTDOWN = -11,	/* the process is stopping */
};

/* A short lower-case description of an error code, for log lines. */
const char *weft_strerror(int err);

#endif
