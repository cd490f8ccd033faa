/*
 * addr822 - RFC 822 address lists in header values, parsed and written
 * back the way Postfix's tok822 module does, so that a header relayq
 * rewrites comes out byte for byte as Postfix's would.
 *
 * A parsed list is a chain of tokens: atoms, quoted strings, comments,
 * domain literals, operator characters, group starts, and ADDR tokens
 * whose children are one address's tokens ("user@example.com" inside
 * "Name <user@example.com>").  Only top-level ADDR tokens are addresses
 * (addr822_addrs()).  Comments are moved out of an address to its right.
 *
 * Parsing never fails: any input gives some chain (possibly empty).  At
 * most token_limit tokens are read (Postfix's token_limit, 10240); the rest
 * of the value is ignored, as Postfix does.
 */
#ifndef ADDR822_H_INCLUDED
#define ADDR822_H_INCLUDED

#include <stddef.h>
#include "util/util.h"

#define A822_ATOM	256
#define A822_QSTRING	257
#define A822_COMMENT	258
#define A822_DOMLIT	259
#define A822_ADDR	260
#define A822_STARTGRP	261

typedef struct A822 A822;
struct A822 {
    int     type;			/* an operator character or A822_* */
    char   *text;			/* atoms, strings, comments, literals */
    A822   *prev, *next;
    A822   *head, *tail;		/* children of an A822_ADDR */
    A822   *owner;			/* the A822_ADDR this token is in, or NULL */
};

/* Parse a header value (the text after "Name:"). */
A822   *addr822_parse(const char *value, int token_limit);
void    addr822_free(A822 *list);

/* The top-level addresses of a parsed list, NULL-terminated; free() it. */
A822  **addr822_addrs(A822 *list, int *count);

/* One address's text in external (quoted) form, e.g. "\"a b\"@example.com". */
char   *addr822_addr_text(const A822 *addr);

/* The same in internal form (quotes removed), as Postfix's tok822_internalize. */
char   *addr822_addr_internal(const A822 *addr);

/* Replace an address's tokens with those of text (external form). */
void    addr822_addr_set(A822 *addr, const char *text);

/*
 * The whole list as Postfix writes a rewritten header value: a newline
 * after each comma, no more than 250 bytes of non-address text per
 * address (else the expression becomes "<address>", with *stripped set).
 */
void    addr822_header_text(BUF *out, A822 *list, int *stripped);

/*
 * A fast answer for the common header: is value (len bytes; CRs are
 * ignored, as the header's value drops them) a list of plain addresses,
 * "user@domain" or "phrase <user@domain>" separated by commas, that
 * addr822_parse() with token_limit would split into exactly those
 * addresses, each with a domain and none ending in "."?  Then nothing in
 * it needs qualifying.  Returns 0 when unsure (quotes, comments, groups,
 * literals, other characters, an empty element, too long): parse it then.
 */
int     addr822_plain_qualified(const char *value, size_t len, int token_limit);

/* Postfix's quote_822_local: quote the localpart when it needs it. */
char   *addr822_quote_local(const char *addr);
char   *addr822_unquote_local(const char *addr);

#endif
