/*
 * util.h - the one error reporter, human-size printer and text escaper.
 */
#ifndef MEMRAY_UTIL_H
#define MEMRAY_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MEMRAY_VERSION "0.1.0"

/* Exit statuses shared by every tool. */
enum { EXIT_OK = 0, EXIT_CHECK = 1, EXIT_USAGE = 2 };
/* Not an exit status: what readers return for an input that holds nothing
 * they read (a missing file, a script, an empty stream), after saying so;
 * the tool then exits EXIT_USAGE without writing anything. */
enum { EXIT_REFUSED = 0x100 };

extern const char *progname;

/* A signal's name without "SIG" ("INT", "RTMIN+2"), or "?" */
const char *mr_signal_name(int sig);

/* "progname: message" on stderr. */
void warnmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* warnmsg, then exit(status). */
void die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* Reports the option getopt_long rejected: call with opterr = 0 and an
 * option string starting with ':' (after any '+'), with what getopt_long
 * returned (':' missing argument, '?' unknown) and argv[optind - 1]. */
void bad_option(int c, const char *arg);

/* Prints text (a usage line, a blank line, then details) and exits with
 * status: all of it on stdout for --help (status 0), only the usage
 * lines on stderr after a mistake. */
void usage_exit(const char *text, int status) __attribute__((noreturn));
/* --version: "PROGNAME VERSION" on stdout, then exit (2 when it cannot be
 * written). */
void version_exit(void) __attribute__((noreturn));

/* realloc that dies (exit status 2, "out of memory") when memory runs
 * out; n 0 gives a block of 1 byte, never NULL. */
void *xrealloc(void *p, size_t n);
/* A copy of s, by xrealloc. */
char *xstrdup(const char *s);
/* The n bytes at b in lower-case hex, into out (2n + 1 bytes); out. */
char *hex_string(char *out, const uint8_t *b, size_t n);

/* The process id in s, or dies with exit status 2 naming the option. */
long pid_arg(const char *opt, const char *s);

/* Formats n bytes for people ("984 B", "1.5 KiB", "12.0 MiB") into buf,
 * which needs 16 bytes; returns buf. */
char *human_size(char *buf, uint64_t n);

/* Parses a size for people: "1048576", "500M", "1.5GiB", "64 KB".
 * K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB
 * powers of 1000; B or nothing, bytes. Returns 0, or -1 if s is not one. */
int parse_size(const char *s, uint64_t *out);

/* Writes s (n bytes, any content) as a double-quoted C-style string:
 * backslash, quote and bytes outside printable ASCII become escapes. */
void put_quoted(FILE *f, const char *s, size_t n);

/* The length of the valid UTF-8 sequence at s (at most n bytes, n > 0),
 * or 0 if s does not start one. */
size_t utf8_len(const unsigned char *s, size_t n);

/* Writes s (n bytes, any content) as a JSON string that is also safe
 * inside an HTML <script> element: quote, backslash, control bytes, '<',
 * '>' and '&' become escapes, and a byte that is not part of valid UTF-8
 * becomes the four characters \xNN, shown as text. */
void json_string(FILE *f, const char *s, size_t n);

/* Flushes stdout and reports a failed write (full disk, closed pipe). */
int close_stdout(void);

#endif
