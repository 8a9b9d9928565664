#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "folded.h"
#include "input.h"
#include "util.h"

/* A quoted metadata value in place, as put_quoted wrote it: from
 * "a \"b\"\n" to a "b" and a newline; up to the closing quote. */
static void unquote(char *v)
{
	char *w = v;
	for (char *r = v + 1; *r && *r != '"'; r++) {
		if (*r != '\\' || !r[1]) {
			*w++ = *r;
			continue;
		}
		r++;
		if (*r == 'n') {
			*w++ = '\n';
		} else if (*r == 't') {
			*w++ = '\t';
		} else if (*r == 'x' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
			char hex[3] = { r[1], r[2], 0 };
			*w++ = (char)strtol(hex, NULL, 16);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* One line: 2 a stack, 1 malformed, 3 metadata, 0 blank or a comment. */
static int line(char *s, size_t n, const struct folded_sink *k)
{
	if (n && s[n - 1] == '\r')
		s[--n] = 0;
	if (n == 0)
		return 0;
	if (s[0] == '#') {
		if (n < 2 || s[1] != ' ')
			return 0;
		/* "# key=NUMBER", "# key="TEXT"" (C escapes), or as memray-c
		 * wrote before, "# key: value" */
		char *key = s + 2, *v = key + strcspn(key, "= ");
		if (*v == '=' && v > key) {
			*v++ = 0;
			if (*v == '"')
				unquote(v);
		} else if ((v = strstr(key, ": "))) {
			*v = 0;
			v += 2;
		} else {
			v = "";
		}
		if (k->meta)
			k->meta(k->ctx, key, v);
		return 3;
	}
	size_t end = n;
	while (end > 0 && s[end - 1] >= '0' && s[end - 1] <= '9')
		end--;
	if (end == n || end < 2 || s[end - 1] != ' ' || n - end > 19)
		return 1;
	uint64_t v = strtoull(s + end, NULL, 10);
	size_t flen = end - 1;
	while (flen > 0 && s[flen - 1] == ' ')
		flen--;
	if (k->stack2) {
		/* a second integer before the last: a differential line */
		size_t b = flen;
		while (b > 0 && s[b - 1] >= '0' && s[b - 1] <= '9')
			b--;
		if (b < flen && b >= 2 && s[b - 1] == ' ' && flen - b <= 19) {
			uint64_t before = strtoull(s + b, NULL, 10);
			size_t f2 = b - 1;
			while (f2 > 0 && s[f2 - 1] == ' ')
				f2--;
			if (f2 > 0) {
				k->stack2(k->ctx, s, f2, before, v);
				return 2;
			}
		}
	}
	if (k->stack)
		k->stack(k->ctx, s, flen, v);
	return 2;
}

long folded_read(struct mr_input *in, const struct folded_sink *sink, struct folded_stats *st)
{
	struct folded_stats z = { 0 };
	char *buf = NULL;
	size_t cap = 0, len = 0;
	uint64_t total = 0;
	long bad = 0;
	int skipping = 0; /* in a line over the limit: its rest is dropped */
	for (;;) {
		if (cap - len < 65536) {
			size_t want = cap ? cap * 2 : 1 << 17;
			char *b = realloc(buf, want);
			if (!b) {
				z.no_memory = 1;
				bad = -1;
				break;
			}
			buf = b;
			cap = want;
		}
		ssize_t k = mr_input_read(in, buf + len, cap - len - 1);
		if (k < 0) {
			bad = -1;
			break;
		}
		total += (uint64_t)k;
		size_t start = 0, end = len + (size_t)k;
		for (size_t i = len; i < end; i++)
			if (buf[i] == '\n') {
				buf[i] = 0;
				if (!skipping && i - start >= FOLDED_LINE_MAX) {
					z.too_long++;
				} else if (!skipping) {
					int t = line(buf + start, i - start, sink);
					bad += t == 1, z.lines += t >= 2;
				}
				skipping = 0;
				start = i + 1;
			}
		memmove(buf, buf + start, end - start);
		len = end - start;
		if (len >= FOLDED_LINE_MAX || (skipping && len)) {
			/* a line this long is no stack: dropped, to its end */
			z.too_long += !skipping;
			skipping = 1;
			len = 0;
		}
		if (!z.lines && total >= FOLDED_SNIFF) {
			z.gave_up = 1;
			break;
		}
		if (k == 0) {
			if (len && !skipping) {
				buf[len] = 0;
				int t = line(buf, len, sink);
				bad += t == 1, z.lines += t >= 2;
			}
			break;
		}
	}
	free(buf);
	if (st)
		*st = z;
	return bad;
}

int folded_read_input(struct mr_input *in, const struct folded_sink *sink)
{
	struct folded_stats st;
	long bad = folded_read(in, sink, &st), good = st.lines;
	int status = EXIT_OK;
	if (bad < 0) {
		warnmsg("%s: %s", mr_input_name(in),
			st.no_memory ? "out of memory for a line" : mr_input_error(in));
		status = EXIT_USAGE;
	} else if (st.gave_up) {
		warnmsg("%s: not collapsed stacks nor a memray stream (no line of the form "
			"'frame;frame;... VALUE' in its first %u MiB)", mr_input_name(in),
			FOLDED_SNIFF >> 20);
		status = EXIT_REFUSED;
	} else if (good == 0) {
		/* not collapsed stacks at all (a script, a log, nothing): refused */
		if (bad)
			warnmsg("%s: not collapsed stacks nor a memray stream (%ld line%s, none of "
				"the form 'frame;frame;... VALUE')", mr_input_name(in), bad,
				bad == 1 ? "" : "s");
		else
			warnmsg("%s: empty: no collapsed stacks nor a memray stream in it",
				mr_input_name(in));
		status = EXIT_REFUSED;
	} else if (bad > 0) {
		warnmsg("%s: %ld malformed lines skipped", mr_input_name(in), bad);
	}
	if (status != EXIT_USAGE && st.too_long && !st.gave_up)
		warnmsg("%s: %ld line%s over %u MiB skipped", mr_input_name(in), st.too_long,
			st.too_long == 1 ? "" : "s", FOLDED_LINE_MAX >> 20);
	mr_input_close(in);
	return status;
}
