/*
 * symbolize.c - see symbolize.h.
 */
#define _GNU_SOURCE
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "symbolize.h"
#include "symcache.h"
#include "util.h"

struct sym_module {
	char *path;
	uint8_t build_id[MR_BUILD_ID_MAX];
	uint32_t build_id_len;
	Dwfl *dwfl;
	Dwfl_Module *mod; /* NULL: raw addresses only */
	struct symcache *kept; /* its frames named by an earlier reading */
};

struct addr_entry {
	size_t m; /* the module's index in mods (which moves as it grows) */
	uint64_t addr;
	char *text;
};

/* A module opened ahead of need by the prefetch thread. */
struct prep {
	char *path;
	uint8_t build_id[MR_BUILD_ID_MAX];
	uint32_t build_id_len;
	Dwfl *dwfl;
	Dwfl_Module *mod;
	int changed; /* its build-id differs from the recorded one */
	struct symcache *kept;
	enum { QUEUED, OPENING, READY, TAKEN } state;
};

/* A page of code of a process whose module has been queued (or has
 * none): most native frames fall in pages already seen. */
struct seen_page {
	const struct mr_proc *p;
	uint64_t page;
};
#define SEEN_PAGES 1024

struct symbolizer {
	struct sym_module *mods;
	size_t nmods;
	struct addr_entry *cache;
	size_t cache_cap, cache_count;
	/* the prefetch (sym_prefetch): preps and their states under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int thread_on, stop;
	struct prep *preps;
	size_t npreps, preps_cap;
	struct seen_page *seen;
	int no_prefetch;
	const char *cache_dir; /* symcache_dir(), or NULL */
};

/* Whether a debuginfod server is configured. */
static int debuginfod_on(void)
{
	const char *urls = getenv("DEBUGINFOD_URLS");
	return urls && *urls;
}

struct symbolizer *sym_new(void)
{
	struct symbolizer *s = xrealloc(NULL, sizeof(*s));
	memset(s, 0, sizeof(*s));
	/* (no reading ahead when modules may be fetched from a server: only
	 * what is shown is worth a download) */
	s->no_prefetch = debuginfod_on();
	s->cache_dir = symcache_dir();
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	return s;
}

static void prefetch_stop(struct symbolizer *s)
{
	if (!s->thread_on)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	s->thread_on = 0;
}

void sym_free(struct symbolizer *s)
{
	if (!s)
		return;
	prefetch_stop(s);
	for (size_t i = 0; i < s->npreps; i++) {
		if (s->preps[i].state != TAKEN && s->preps[i].dwfl)
			dwfl_end(s->preps[i].dwfl);
		if (s->preps[i].state != TAKEN)
			symcache_close(s->preps[i].kept);
		free(s->preps[i].path);
	}
	free(s->preps);
	free(s->seen);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	for (size_t i = 0; i < s->nmods; i++) {
		symcache_close(s->mods[i].kept);
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

/* cand, opened, if its build-id is want's: *found is then its path. */
static int open_if_id(const char *cand, const unsigned char *want, int want_len, char **found)
{
	int f = open(cand, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -1;
	Elf *e = elf_begin(f, ELF_C_READ_MMAP, NULL);
	const void *bits = NULL;
	ssize_t got = e ? dwelf_elf_gnu_build_id(e, &bits) : -1;
	int same = got == want_len && memcmp(bits, want, (size_t)got) == 0;
	elf_end(e);
	if (!same) {
		close(f);
		return -1;
	}
	*found = xstrdup(cand);
	return f;
}

/* The debug file named link for the module file at path (absolute):
 * beside it, in .debug/ there, or under /usr/lib/debug; only one whose
 * build-id is want. */
static int find_by_link(const char *path, const char *link, const unsigned char *want,
			int want_len, char **found)
{
	int dir = (int)(strrchr(path, '/') - path);
	static const char *const where[] = { "%.*s/%s", "%.*s/.debug/%s", "/usr/lib/debug%.*s/%s" };
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		char cand[4096];
		int n = snprintf(cand, sizeof(cand), where[i], dir, path, link);
		if (n < 0 || (size_t)n >= sizeof(cand) || strcmp(cand, path) == 0)
			continue;
		int f = open_if_id(cand, want, want_len, found);
		if (f >= 0)
			return f;
	}
	return -1;
}

/* The debug file named by build-id under /usr/lib/debug/.build-id, as
 * libdw's build-id search finds it. */
static int find_by_id(const unsigned char *want, int want_len, char **found)
{
	char hex[2 * MR_BUILD_ID_MAX + 1], cand[64 + 2 * MR_BUILD_ID_MAX];
	if (want_len < 2 || want_len > MR_BUILD_ID_MAX)
		return -1;
	hex_string(hex, want, (size_t)want_len);
	snprintf(cand, sizeof(cand), "/usr/lib/debug/.build-id/%.2s/%s.debug", hex, hex + 2);
	return open_if_id(cand, want, want_len, found);
}

/* The search of find_debuginfo below, for a module with a build-id and
 * debuginfod off: by build-id, then by debuglink name (if link) in three
 * places, for path and for the file it resolves to. */
static int find_separate(const char *path, const unsigned char *want, int want_len,
			 const char *link, char **found)
{
	int fd = find_by_id(want, want_len, found);
	if (fd >= 0 || !link || !path || path[0] != '/')
		return fd;
	char *real = realpath(path, NULL);
	const char *paths[2] = { path, real && strcmp(real, path) != 0 ? real : NULL };
	for (int k = 0; k < 2 && fd < 0 && paths[k]; k++)
		fd = find_by_link(paths[k], link, want, want_len, found);
	free(real);
	return fd;
}

/* Where a module's separate debug file is found. libdw's standard search
 * looks for it by build-id under /usr/lib/debug, then by its
 * .gnu_debuglink name beside the file, in .debug/ there and under
 * /usr/lib/debug; as its last step it asks debuginfod servers, and for
 * that libdw 0.188 loads libdebuginfod and libcurl (about 6 ms and 17 M
 * instructions, more than the rest of symbolizing a small recording)
 * whether or not a server is configured. With DEBUGINFOD_URLS set the
 * standard search runs, servers included, as the user asked, and so it
 * does for a dwz file (a .gnu_debugaltlink: asked for with no CRC) and a
 * module without a build-id. Otherwise: by build-id, then by debuglink
 * name in those three places, for the recorded path and for the file it
 * resolves to (a library is often recorded by a symbolic link, as under
 * /lib), a file found by name taken only when its build-id is the
 * module's. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, GElf_Addr base,
			  const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
			  char **debuginfo_file_name)
{
	const unsigned char *want;
	GElf_Addr vaddr;
	int want_len = dwfl_module_build_id(mod, &want, &vaddr);
	if (debuginfod_on() || want_len <= 0 || want_len > MR_BUILD_ID_MAX ||
	    (debuglink_file && debuglink_crc == 0))
		return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name,
						    debuglink_file, debuglink_crc,
						    debuginfo_file_name);
	return find_separate(file_name, want, want_len, debuglink_file, debuginfo_file_name);
}

static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

static int same_module(const char *path, const uint8_t *id, uint32_t id_len, const char *path2,
		       const uint8_t *id2, uint32_t id2_len)
{
	return strcmp(path, path2) == 0 && id_len == id2_len && memcmp(id, id2, id_len) == 0;
}

/* Opens the module file at path in a Dwfl of its own. *mod stays NULL
 * (raw addresses) when it cannot be read, or when its build-id is not
 * the recorded one (*changed). */
static void open_dwfl(const char *path, const uint8_t *build_id, uint32_t build_id_len,
		      Dwfl **dwfl, Dwfl_Module **mod, int *changed)
{
	*dwfl = NULL;
	*mod = NULL;
	*changed = 0;
	if (path[0] != '/')
		return; /* linux-vdso.so.1 and the like: no file */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	*dwfl = dwfl_begin(&callbacks);
	if (!*dwfl) {
		close(fd);
		return;
	}
	dwfl_report_begin(*dwfl);
	Dwfl_Module *m = dwfl_report_elf(*dwfl, base_name(path), path, fd, 0, false);
	dwfl_report_end(*dwfl, NULL, NULL);
	if (!m) {
		close(fd);
		return;
	}
	const unsigned char *bits;
	GElf_Addr vaddr;
	int n = dwfl_module_build_id(m, &bits, &vaddr);
	if (build_id_len && (n != (int)build_id_len || memcmp(bits, build_id, (size_t)n) != 0))
		*changed = 1;
	else
		*mod = m;
}

/* ---- the prefetch ---------------------------------------------------------
 * Reading a module's debug information is most of what symbolizing costs
 * (inflating the compressed DWARF of Debian's -dbg packages: a fifth of
 * memray-fold's instructions on a recording of a million events). The
 * readers learn which modules they will need as the stream is read (each
 * native frame comes before the events that use it), so a thread of the
 * symbolizer's own opens them meanwhile, one Dwfl each, and the reading
 * does not wait for it. Only the thread touches a prep between QUEUED and
 * READY; the main thread takes it from there (module_open), or opens a
 * module itself that the thread has not begun. */

/* Whether ELF e has a section named name with contents; for DWARF, any
 * of those with which libdw takes a file as having it. */
static int has_section(Elf *e, const char *name)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx) != 0)
		return 0;
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)) != NULL;) {
		GElf_Shdr sh;
		const char *n;
		if (gelf_getshdr(scn, &sh) && sh.sh_type != SHT_NOBITS && sh.sh_size &&
		    (n = elf_strptr(e, shstrndx, sh.sh_name)) && strcmp(n, name) == 0)
			return 1;
	}
	return 0;
}

static int has_dwarf(Elf *e)
{
	static const char *const names[] = { ".debug_info", ".debug_line", ".debug_frame",
					     ".zdebug_info", ".zdebug_line", ".zdebug_frame" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (has_section(e, names[i]))
			return 1;
	return 0;
}

/* The file the module at path will have its DWARF read from, found before
 * it is read, as libdw finds it: the module file when it has DWARF of its
 * own, else the separate debug file of find_debuginfo's search; its path
 * in *src and its state in *st. -1 when there is none, or when the frames
 * would depend on more than that one file or could not be told apart
 * from another reading's: a dwz file (.gnu_debugaltlink), debuginfod
 * (whose files libdw does not name), a debuglink without a CRC. */
static int debug_source(Dwfl_Module *mod, const char *path, const uint8_t *id, uint32_t id_len,
			char **src, struct stat *st)
{
	Dwarf_Addr bias;
	Elf *e = debuginfod_on() ? NULL : dwfl_module_getelf(mod, &bias);
	if (!e)
		return -1;
	if (has_dwarf(e)) {
		if (has_section(e, ".gnu_debugaltlink") || stat(path, st) != 0)
			return -1;
		*src = xstrdup(path);
		return 0;
	}
	GElf_Word crc = 0;
	const char *link = dwelf_elf_gnu_debuglink(e, &crc);
	if (link && crc == 0)
		return -1;
	char *found = NULL;
	int fd = find_separate(path, id, (int)id_len, link, &found);
	if (fd < 0)
		return -1;
	Elf *d = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	int ok = d && has_dwarf(d) && !has_section(d, ".gnu_debugaltlink") && fstat(fd, st) == 0;
	elf_end(d);
	close(fd);
	if (!ok) {
		free(found);
		return -1;
	}
	*src = found;
	return 0;
}

/* The frames kept for a module file that was opened, when the file its
 * DWARF will come from is known: none without a build-id, which is what
 * names them. */
static struct symcache *cache_load(struct symbolizer *s, Dwfl_Module *mod, const char *path,
				   const uint8_t *id, uint32_t id_len)
{
	char *src;
	struct stat st;
	if (!s->cache_dir || !id_len || debug_source(mod, path, id, id_len, &src, &st) < 0)
		return NULL;
	struct symcache *c = symcache_load(s->cache_dir, id, id_len, base_name(path), src, &st);
	free(src);
	return c;
}

static void *prefetch_main(void *arg)
{
	struct symbolizer *s = arg;
	pthread_mutex_lock(&s->mu);
	for (size_t next = 0;;) {
		while (!s->stop && next == s->npreps)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		struct prep *q = &s->preps[next++];
		if (q->state != QUEUED)
			continue;
		q->state = OPENING;
		const char *path = q->path;
		uint8_t id[MR_BUILD_ID_MAX];
		uint32_t id_len = q->build_id_len;
		memcpy(id, q->build_id, id_len);
		size_t i = next - 1;
		pthread_mutex_unlock(&s->mu);
		Dwfl *dwfl;
		Dwfl_Module *mod;
		int changed;
		open_dwfl(path, id, id_len, &dwfl, &mod, &changed);
		struct symcache *kept = mod ? cache_load(s, mod, path, id, id_len) : NULL;
		if (mod && !symcache_count(kept)) {
			Dwarf_Addr bias;
			dwfl_module_getdwarf(mod, &bias);
			dwfl_module_getsymtab(mod);
		}
		pthread_mutex_lock(&s->mu);
		q = &s->preps[i]; /* (preps may have moved) */
		q->dwfl = dwfl;
		q->mod = mod;
		q->kept = kept;
		q->changed = changed;
		q->state = READY;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

void sym_prefetch(struct symbolizer *s, const struct mr_proc *p, uint64_t ip)
{
	if (s->no_prefetch)
		return;
	if (!s->seen) {
		s->seen = xrealloc(NULL, SEEN_PAGES * sizeof(*s->seen));
		memset(s->seen, 0, SEEN_PAGES * sizeof(*s->seen));
	}
	uint64_t page = (ip - 1) >> 12;
	struct seen_page *e = &s->seen[(page ^ page >> 10) & (SEEN_PAGES - 1)];
	if (e->p == p && e->page == page)
		return;
	e->p = p;
	e->page = page;
	const struct mr_module *rm = sym_module_of(p, ip);
	if (!rm)
		return;
	const char *path = mr_string(p, rm->path);
	if (path[0] != '/')
		return;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->npreps; i++)
		if (same_module(s->preps[i].path, s->preps[i].build_id, s->preps[i].build_id_len,
				path, rm->build_id, rm->build_id_len)) {
			pthread_mutex_unlock(&s->mu);
			return;
		}
	if (s->npreps == s->preps_cap) {
		s->preps_cap = s->preps_cap ? s->preps_cap * 2 : 16;
		s->preps = xrealloc(s->preps, s->preps_cap * sizeof(*s->preps));
	}
	struct prep *q = &s->preps[s->npreps++];
	memset(q, 0, sizeof(*q));
	q->path = xstrdup(path);
	memcpy(q->build_id, rm->build_id, rm->build_id_len);
	q->build_id_len = rm->build_id_len;
	q->state = QUEUED;
	/* (without a thread, module_open opens it when it is needed) */
	if (!s->thread_on)
		s->thread_on = pthread_create(&s->thread, NULL, prefetch_main, s) == 0;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Takes the prefetch's Dwfl for m, waiting for the thread if it is opening
 * it; 0 when there is none to take (never queued, or not yet begun). */
static int take_prep(struct symbolizer *s, struct sym_module *m, int *changed)
{
	if (!s->npreps)
		return 0;
	pthread_mutex_lock(&s->mu);
	struct prep *q = NULL;
	for (size_t i = 0; i < s->npreps && !q; i++)
		if (s->preps[i].state != TAKEN &&
		    same_module(s->preps[i].path, s->preps[i].build_id, s->preps[i].build_id_len,
				m->path, m->build_id, m->build_id_len))
			q = &s->preps[i];
	if (!q || q->state == QUEUED) {
		if (q)
			q->state = TAKEN;
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	size_t i = (size_t)(q - s->preps);
	while (s->preps[i].state != READY)
		pthread_cond_wait(&s->cv, &s->mu);
	q = &s->preps[i];
	m->dwfl = q->dwfl;
	m->mod = q->mod;
	m->kept = q->kept;
	*changed = q->changed;
	q->state = TAKEN;
	pthread_mutex_unlock(&s->mu);
	return 1;
}

/* Opens a module file once; checks that it is the file that was loaded. */
static struct sym_module *module_open(struct symbolizer *s, const struct mr_proc *p,
				      const struct mr_module *rm)
{
	const char *path = mr_string(p, rm->path);
	for (size_t i = 0; i < s->nmods; i++)
		if (same_module(s->mods[i].path, s->mods[i].build_id, s->mods[i].build_id_len, path,
				rm->build_id, rm->build_id_len))
			return &s->mods[i];
	s->mods = xrealloc(s->mods, (s->nmods + 1) * sizeof(*s->mods));
	struct sym_module *m = &s->mods[s->nmods++];
	memset(m, 0, sizeof(*m));
	m->path = xstrdup(path);
	memcpy(m->build_id, rm->build_id, rm->build_id_len);
	m->build_id_len = rm->build_id_len;
	int changed = 0;
	if (!take_prep(s, m, &changed)) {
		open_dwfl(path, rm->build_id, rm->build_id_len, &m->dwfl, &m->mod, &changed);
		if (m->mod)
			m->kept = cache_load(s, m->mod, path, rm->build_id, rm->build_id_len);
	}
	if (changed)
		warnmsg("warning: %s has changed since it was recorded (its build-id differs):"
			" its frames are shown as raw addresses", path);
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

/* The file m's DWARF was read from: its separate debug file, or the
 * module file itself; NULL when it has none (its frames then come from
 * the symbol table alone, which costs too little to keep). */
static const char *debug_file(struct sym_module *m)
{
	const char *main_file = NULL, *debug = NULL;
	Dwarf_Addr bias;
	if (!m->mod || !dwfl_module_getdwarf(m->mod, &bias))
		return NULL;
	dwfl_module_info(m->mod, NULL, NULL, NULL, NULL, NULL, &main_file, &debug);
	return debug ? debug : main_file;
}

static size_t addr_hash(size_t m, uint64_t a)
{
	uint64_t h = ((uint64_t)m << 48 ^ a * 0x9e3779b97f4a7c15ull);
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
	size_t mi = (size_t)(m - s->mods);
	size_t j = addr_hash(mi, a) & (s->cache_cap - 1);
	while (s->cache[j].text) {
		if (s->cache[j].m == mi && s->cache[j].addr == a)
			return s->cache[j].text;
		j = (j + 1) & (s->cache_cap - 1);
	}
	const char *kept = symcache_get(m->kept, a);
	if (kept) {
		s->cache[j] = (struct addr_entry){ mi, a, xstrdup(kept) };
	} else {
		struct text t = { NULL, 0, 0 };
		describe(&t, m, a, a + 1);
		s->cache[j] = (struct addr_entry){ mi, a, root_first(&t) };
		free(t.s);
		if (m->kept)
			symcache_put(m->kept, a, s->cache[j].text, debug_file(m));
	}
	s->cache_count++;
	return s->cache[j].text;
}
