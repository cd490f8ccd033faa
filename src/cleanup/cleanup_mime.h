/*
 * cleanup_mime - the message structure as Postfix's mime_state(3) sees it,
 * for header_checks, mime_header_checks, nested_header_checks and
 * body_checks (cleanup) and their smtp_* counterparts (the SMTP client).
 *
 * The input is a whole message (lines ending in CRLF or LF).  The
 * classifier reports, in order:
 *   - each logical header (a header line and its continuation lines) with
 *     its class: PRIMARY (the message header), MULTIPART (the header of a
 *     part of a multipart body) or NESTED (the header of a message/rfc822
 *     part); the text is Postfix's: physical lines without their line ends,
 *     joined by "\n", with obsolete "Name :" written "Name:";
 *   - the end of the primary header block (once, also at end of input);
 *   - each body record: a line without its line end, split into records of
 *     at most line_limit bytes as Postfix's queue records are (only the last
 *     record of a line carries its line end), with its offset in the body
 *     of the current part (reset after each header block, as Postfix does).
 *     The empty line that ends a header block is itself a body record.
 *     When the primary header ends on a line that is not a header, an
 *     empty record with a CRLF end is reported first (Postfix inserts it).
 * Boundaries are recognized as Postfix does (a "--boundary" prefix at the
 * start of a line; "--boundary--" closes the multipart); a multipart/digest
 * part defaults to message/rfc822; at most nesting_limit multiparts are
 * open at once (Postfix's mime_nesting_limit).  Each header's raw bytes are
 * cut at header_limit bytes (the rest of the header is dropped and the cut
 * text ends in CRLF), as relayq's cleanup has always done.
 *
 * Pure: no I/O, no tables; tests/fuzz/fuzz_mime.c runs it on any input.
 */
#ifndef CLEANUP_MIME_H_INCLUDED
#define CLEANUP_MIME_H_INCLUDED

#include <stddef.h>

#define MIME_HDR_PRIMARY	1
#define MIME_HDR_MULTIPART	2
#define MIME_HDR_NESTED		3

typedef struct CLEANUP_MIME_CB {
    /* One logical header: text as Postfix matches it; raw as received. */
    void    (*header) (void *ctx, int cls, const char *text, const char *raw, size_t rawlen);
    /* End of the primary header; non-zero: stop here (the caller copies the rest). */
    int     (*header_end) (void *ctx);
    /* One body record; eol is NULL for a record that the next one continues. */
    void    (*body) (void *ctx, const char *rec, size_t len, size_t offset,
		             const char *eol, size_t eollen);
} CLEANUP_MIME_CB;

typedef struct CLEANUP_MIME_OPTS {
    size_t  header_limit;		/* header_size_limit; 0: 102400 */
    size_t  line_limit;			/* line_length_limit; 0: no split */
    int     nesting_limit;		/* mime_nesting_limit; 0: 100 */
} CLEANUP_MIME_OPTS;

/*
 * Runs the classifier over in[0..len).  Returns the offset where it stopped:
 * len, or the start of the body when header_end asked to stop (then the
 * body has not been reported).
 */
size_t  cleanup_mime_run(const char *in, size_t len, const CLEANUP_MIME_OPTS *opts,
			         const CLEANUP_MIME_CB *cb, void *ctx);

/*
 * Postfix's is_header_buf(): the length of the header name at line (up to
 * the colon, without the obsolete white space before it), or 0 when the
 * line does not start a header.
 */
size_t  cleanup_mime_header_name(const char *line, size_t len);

/*
 * The class a header is checked as: Postfix checks the MIME headers
 * (Content-Type, Content-Transfer-Encoding, Content-Disposition,
 * Content-Description, Content-ID, MIME-Version) with mime_header_checks
 * wherever they occur, the primary header included.
 */
int     cleanup_mime_check_class(int cls, const char *text);

#endif
