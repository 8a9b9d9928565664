/*
 * modules.c - the loaded objects, written as module records (path, load
 * address, build id, segments) so that the readers symbolize native
 * frames offline; kept up to date as objects are loaded and unloaded.
 *
 * Owns: the list of modules the stream has.
 * Calls: dl_iterate_phdr, libunwind (unw_flush_cache), the writer
 * (mr_w_module_*, under the lock).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "internal.h"

/* ---- modules ------------------------------------------------------------
 * The loaded objects are listed with dl_iterate_phdr outside the lock (it
 * takes the loader's lock, which a thread inside dlopen holds while it
 * allocates), then compared with what the stream already has. */

struct module {
	char *path;
	uintptr_t base;
	uint8_t build_id[MR_BUILD_ID_MAX];
	uint32_t build_id_len, nsegs;
	struct mr_segment segs[MR_SEGMENTS_MAX];
	uint32_t id;  /* in the stream; 0 while not yet written */
	int seen;
};
static struct module *known;
static size_t nknown, known_cap;
static unsigned long long map_adds = (unsigned long long)-1, map_subs;

struct scan {
	struct module *mods;
	size_t n, cap;
};

static void copy_build_id(struct module *m, const struct dl_phdr_info *info, const ElfW(Phdr) *ph)
{
	const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
	const char *end = p + ph->p_memsz;
	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
		size_t name = (nh->n_namesz + 3) & ~3u, desc = (nh->n_descsz + 3) & ~3u;
		const char *d = p + sizeof(*nh) + name;
		if (d + desc > end)
			return;
		if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
		    memcmp(p + sizeof(*nh), "GNU", 4) == 0 && nh->n_descsz <= MR_BUILD_ID_MAX) {
			memcpy(m->build_id, d, nh->n_descsz);
			m->build_id_len = nh->n_descsz;
			return;
		}
		p = d + desc;
	}
}

static char *dup_path(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = real.malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static int scan_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct scan *s = arg;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct module *m = real.realloc(s->mods, cap * sizeof(*m));
		if (!m)
			return 1;
		s->mods = m;
		s->cap = cap;
	}
	struct module *m = &s->mods[s->n];
	memset(m, 0, sizeof(*m));
	char exe[4096];
	const char *name = info->dlpi_name;
	if (!name || !name[0]) {
		ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[k > 0 ? k : 0] = 0;
		name = exe;
	}
	m->path = dup_path(name);
	if (!m->path)
		return 1;
	m->base = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && m->nsegs < MR_SEGMENTS_MAX)
			m->segs[m->nsegs++] = (struct mr_segment){ ph->p_vaddr, ph->p_memsz, ph->p_flags };
		else if (ph->p_type == PT_NOTE && !m->build_id_len)
			copy_build_id(m, info, ph);
	}
	s->n++;
	return 0;
}

static int count_changes(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	unsigned long long *c = arg;
	c[0] = info->dlpi_adds;
	c[1] = info->dlpi_subs;
	return 1;
}

/* Brings the stream's module list up to date: its return says whether the
 * loader's lists changed. A stream without native stacks has no
 * instruction pointers to symbolize, so it gets no module records (a
 * Python program's start-up wrote about 900 bytes of them, 5% of its
 * stream). Call with the guard set and the lock not held. */
int modules_sync(int force)
{
	unsigned long long c[2] = { 0, 0 };
	dl_iterate_phdr(count_changes, c);
	if (!force && c[0] == map_adds && c[1] == map_subs)
		return 0;
	/* objects the program's dlopen and dlclose did not load or unload
	 * (glibc's own: gconv, nss), seen here at the sampler's next tick */
	unwind_flush();
	if (!native_stacks) {
		lock_stream();
		map_adds = c[0];
		map_subs = c[1];
		unlock();
		return 1;
	}
	struct scan s = { NULL, 0, 0 };
	dl_iterate_phdr(scan_one, &s);
	lock_stream();
	if (ACTIVE()) {
		map_adds = c[0];
		map_subs = c[1];
		for (size_t i = 0; i < nknown; i++)
			known[i].seen = 0;
		for (size_t i = 0; i < s.n; i++) {
			struct module *m = &s.mods[i];
			size_t j;
			for (j = 0; j < nknown; j++)
				if (known[j].base == m->base && strcmp(known[j].path, m->path) == 0)
					break;
			if (j < nknown) {
				known[j].seen = 1;
				real.free(m->path);
				continue;
			}
			if (nknown == known_cap) {
				size_t cap = known_cap ? known_cap * 2 : 64;
				struct module *k = real.realloc(known, cap * sizeof(*k));
				if (!k) {
					real.free(m->path);
					continue;
				}
				known = k;
				known_cap = cap;
			}
			uint32_t path = mr_w_string(&writer, m->path, strlen(m->path));
			m->id = mr_w_module_load(&writer, path, m->base, m->build_id,
						 m->build_id_len, m->segs, m->nsegs);
			m->seen = 1;
			known[nknown++] = *m;
		}
		for (size_t i = 0; i < nknown;) {
			if (!known[i].seen) {
				mr_w_module_unload(&writer, known[i].id);
				real.free(known[i].path);
				known[i] = known[--nknown];
			} else {
				i++;
			}
		}
	} else {
		for (size_t i = 0; i < s.n; i++)
			real.free(s.mods[i].path);
	}
	unlock();
	real.free(s.mods);
	return 1;
}

/* Forgets the modules of an earlier stream. */
void modules_forget(void)
{
	for (size_t i = 0; i < nknown; i++)
		real.free(known[i].path);
	nknown = 0;
	map_adds = (unsigned long long)-1;
}

void tracker_modules_changed(int closed)
{
	tracker_guard = 1;
	if (closed)
		unw_flush_cache(unw_local_addr_space, 0, 0);
	modules_sync(0);
	tracker_guard = 0;
}
