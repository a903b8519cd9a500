/*
 * Descriptions of the shared error codes.
 */
#include "lib/err.h"

const char *weft_strerror(int err)
{
	switch (err) {
	case WEFT_OK: return "ok";
	case WEFT_EINVAL: return "invalid input";
	case WEFT_ENOTFOUND: return "not found";
	case WEFT_EUNAVAIL: return "database unavailable";
	case WEFT_EOVERLOAD: return "overloaded";
	case WEFT_EIO: return "i/o error";
	case WEFT_ETOOBIG: return "over a size limit";
	case WEFT_ECONFLICT: return "conflict";
	case WEFT_ESCHEMA: return "unknown schema version";
	case WEFT_EAUTH: return "unauthenticated";
	case WEFT_EFORBIDDEN: return "forbidden";
	case WEFT_ESHUTDOWN: return "shutting down";
	}
	return "unknown error";
}
