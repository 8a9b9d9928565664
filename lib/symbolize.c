/*
 * symbolize.c - see symbolize.h.
 */
#define _GNU_SOURCE
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "symbolize.h"
#include "util.h"

struct sym_module {
	char *path;
	uint8_t build_id[MR_BUILD_ID_MAX];
	uint32_t build_id_len;
	Dwfl *dwfl;
	Dwfl_Module *mod; /* NULL: raw addresses only */
};

struct addr_entry {
	const struct sym_module *m;
	uint64_t addr;
	char *text;
};

struct symbolizer {
	struct sym_module *mods;
	size_t nmods;
	struct addr_entry *cache;
	size_t cache_cap, cache_count;
};

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

struct symbolizer *sym_new(void)
{
	struct symbolizer *s = xrealloc(NULL, sizeof(*s));
	memset(s, 0, sizeof(*s));
	return s;
}

void sym_free(struct symbolizer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nmods; i++) {
		if (s->mods[i].dwfl)
			dwfl_end(s->mods[i].dwfl);
		free(s->mods[i].path);
	}
	free(s->mods);
	for (size_t i = 0; i < s->cache_cap; i++)
		free(s->cache[i].text);
	free(s->cache);
	free(s);
}

static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/* Opens a module file once; checks that it is the file that was loaded. */
static struct sym_module *module_open(struct symbolizer *s, const struct mr_proc *p,
				      const struct mr_module *rm)
{
	const char *path = mr_string(p, rm->path);
	for (size_t i = 0; i < s->nmods; i++)
		if (strcmp(s->mods[i].path, path) == 0 && s->mods[i].build_id_len == rm->build_id_len &&
		    memcmp(s->mods[i].build_id, rm->build_id, rm->build_id_len) == 0)
			return &s->mods[i];
	s->mods = xrealloc(s->mods, (s->nmods + 1) * sizeof(*s->mods));
	struct sym_module *m = &s->mods[s->nmods++];
	memset(m, 0, sizeof(*m));
	m->path = xstrdup(path);
	memcpy(m->build_id, rm->build_id, rm->build_id_len);
	m->build_id_len = rm->build_id_len;
	if (path[0] != '/')
		return m; /* linux-vdso.so.1 and the like: no file */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return m;
	m->dwfl = dwfl_begin(&callbacks);
	if (!m->dwfl) {
		close(fd);
		return m;
	}
	dwfl_report_begin(m->dwfl);
	m->mod = dwfl_report_elf(m->dwfl, base_name(path), path, fd, 0, false);
	dwfl_report_end(m->dwfl, NULL, NULL);
	if (!m->mod) {
		close(fd);
		return m;
	}
	const unsigned char *bits;
	GElf_Addr vaddr;
	int n = dwfl_module_build_id(m->mod, &bits, &vaddr);
	if (rm->build_id_len && (n != (int)rm->build_id_len || memcmp(bits, rm->build_id, (size_t)n) != 0)) {
		warnmsg("warning: %s has changed since it was recorded (its build-id differs):"
			" its frames are shown as raw addresses", path);
		m->mod = NULL;
	}
	return m;
}

/* "name (where)" appended to a growing text, frames separated by '\n'. */
struct text {
	char *s;
	size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (t->s && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		t->cap = (t->cap + (size_t)n + 64) * 2;
		t->s = xrealloc(t->s, t->cap);
	}
}

static const char *die_name(Dwarf_Die *die)
{
	Dwarf_Attribute a;
	const char *name = NULL;
	if (dwarf_attr_integrate(die, DW_AT_linkage_name, &a) ||
	    dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a))
		name = dwarf_formstring(&a);
	if (!name)
		name = dwarf_diename(die);
	if (!name && dwarf_attr_integrate(die, DW_AT_name, &a))
		name = dwarf_formstring(&a);
	return name;
}

/* Leaf-first frames for address a of module m (a is a module address). */
static void describe(struct text *t, struct sym_module *m, uint64_t a, uint64_t ip)
{
	const char *module = base_name(m->path);
	if (!m->mod) {
		text_add(t, "0x%" PRIx64 " (%s)", ip, module);
		return;
	}
	const char *sym = dwfl_module_addrname(m->mod, a);
	Dwfl_Line *line = dwfl_module_getsrc(m->mod, a);
	int lineno = 0;
	const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
	Dwarf_Addr bias = 0;
	Dwarf_Die *cu = dwfl_module_addrdie(m->mod, a, &bias);
	Dwarf_Die *scopes = NULL;
	int n = cu ? dwarf_getscopes(cu, a - bias, &scopes) : 0;
	Dwarf_Files *files = NULL;
	if (cu)
		dwarf_getsrcfiles(cu, &files, NULL);
	int frames = 0;
	for (int i = 0; i < n; i++) {
		int tag = dwarf_tag(&scopes[i]);
		if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram)
			continue;
		const char *name = die_name(&scopes[i]);
		if (!name)
			name = sym ? sym : "??";
		if (frames++)
			text_add(t, "\n");
		if (file && lineno > 0)
			text_add(t, "%s (%s:%d)", name, base_name(file), lineno);
		else
			text_add(t, "%s (%s)", name, module);
		if (tag == DW_TAG_subprogram)
			break;
		/* the next frame out is where this one was inlined */
		Dwarf_Attribute at;
		Dwarf_Word cf = 0, cl = 0;
		if (dwarf_attr(&scopes[i], DW_AT_call_file, &at))
			dwarf_formudata(&at, &cf);
		if (dwarf_attr(&scopes[i], DW_AT_call_line, &at))
			dwarf_formudata(&at, &cl);
		file = files && cf ? dwarf_filesrc(files, cf, NULL, NULL) : NULL;
		lineno = (int)cl;
	}
	free(scopes);
	if (frames)
		return;
	if (sym && file && lineno > 0)
		text_add(t, "%s (%s:%d)", sym, base_name(file), lineno);
	else if (sym)
		text_add(t, "%s (%s)", sym, module);
	else
		text_add(t, "0x%" PRIx64 " (%s)", a, module);
}

/* Reverses the '\n'-separated frames of t in place into a fresh string. */
static char *root_first(const struct text *t)
{
	char *out = xrealloc(NULL, t->len + 1);
	size_t o = 0, end = t->len;
	while (end > 0) {
		size_t start = end;
		while (start > 0 && t->s[start - 1] != '\n')
			start--;
		if (o)
			out[o++] = '\n';
		memcpy(out + o, t->s + start, end - start);
		o += end - start;
		end = start ? start - 1 : 0;
	}
	out[o] = 0;
	return out;
}

static size_t addr_hash(const struct sym_module *m, uint64_t a)
{
	uint64_t h = ((uint64_t)(uintptr_t)m ^ a * 0x9e3779b97f4a7c15ull);
	return (size_t)(h ^ (h >> 29));
}

const struct mr_module *sym_module_of(const struct mr_proc *p, uint64_t ip)
{
	/* the modules loaded now, then (for a module since unloaded) the others */
	for (size_t i = p->nmodules * 2; i-- > 2;) {
		const struct mr_module *c = &p->modules[i / 2];
		if (c->loaded != (int)(i & 1))
			continue;
		for (uint32_t k = 0; k < c->nsegs; k++)
			if ((c->segs[k].prot & 1) && ip > c->base + c->segs[k].vaddr &&
			    ip <= c->base + c->segs[k].vaddr + c->segs[k].size)
				return c;
	}
	return NULL;
}

const char *sym_frames(struct symbolizer *s, const struct mr_proc *p, uint64_t ip,
		       const char **module)
{
	const struct mr_module *rm = sym_module_of(p, ip);
	static char raw[64];
	if (!rm) {
		*module = "";
		snprintf(raw, sizeof(raw), "0x%" PRIx64, ip);
		return raw;
	}
	*module = mr_string(p, rm->path);
	struct sym_module *m = module_open(s, p, rm);
	/* a return address: the call is the instruction before it */
	uint64_t a = ip - 1 - rm->base;
	if (s->cache_count * 2 >= s->cache_cap) {
		size_t cap = s->cache_cap ? s->cache_cap * 2 : 4096;
		struct addr_entry *c = xrealloc(NULL, cap * sizeof(*c));
		memset(c, 0, cap * sizeof(*c));
		for (size_t i = 0; i < s->cache_cap; i++)
			if (s->cache[i].text) {
				size_t j = addr_hash(s->cache[i].m, s->cache[i].addr) & (cap - 1);
				while (c[j].text)
					j = (j + 1) & (cap - 1);
				c[j] = s->cache[i];
			}
		free(s->cache);
		s->cache = c;
		s->cache_cap = cap;
	}
	size_t j = addr_hash(m, a) & (s->cache_cap - 1);
	while (s->cache[j].text) {
		if (s->cache[j].m == m && s->cache[j].addr == a)
			return s->cache[j].text;
		j = (j + 1) & (s->cache_cap - 1);
	}
	struct text t = { NULL, 0, 0 };
	describe(&t, m, a, a + 1);
	s->cache[j] = (struct addr_entry){ m, a, root_first(&t) };
	s->cache_count++;
	free(t.s);
	return s->cache[j].text;
}
