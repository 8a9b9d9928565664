/*
 * boot.c - the tracker's first steps in a process: the bootstrap
 * allocator that serves dlsym's early calloc, and finding the real
 * allocator functions (`real`).
 *
 * Owns: real, boot_buf, boot_used.
 * Calls: dlsym only; nothing of the other parts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

struct real_fns real;

/* ---- bootstrap allocator ------------------------------------------------
 * dlsym may calloc before `real` is known; those few blocks come from
 * here and are never given back. Each block is preceded by its size. */

_Alignas(16) char boot_buf[BOOT_SIZE];
size_t boot_used;

NO_TSAN void *boot_alloc(size_t size)
{
	size_t need = ((size + 15) & ~(size_t)15) + 16;
	size_t at = __atomic_fetch_add(&boot_used, need, __ATOMIC_RELAXED);
	if (at + need > sizeof(boot_buf) || need < size)
		return NULL;
	*(size_t *)(boot_buf + at) = size;
	return boot_buf + at + 16;
}

NO_TSAN size_t boot_size(const void *p)
{
	return *(const size_t *)((const char *)p - 16);
}

/* ---- finding the real functions ---------------------------------------- */

__attribute__((noreturn)) static void raw_exit(int status)
{
	syscall(SYS_exit_group, status);
	for (;;)
		;
}

NO_TSAN int tracker_resolve(void)
{
	static int state; /* 0 not yet, 1 in progress, 2 done */
	if (state == 2)
		return 1;
	if (state == 1)
		return 0;
	state = 1;
#define R(name) real.name = (__typeof__(real.name))dlsym(RTLD_NEXT, #name)
	R(calloc);
	R(malloc);
	R(free);
	R(realloc);
	R(reallocarray);
	R(posix_memalign);
	R(aligned_alloc);
	R(memalign);
	R(valloc);
	R(pvalloc);
	R(mmap);
	R(mmap64);
	R(munmap);
	R(mremap);
	R(malloc_usable_size);
	R(dlopen);
	R(dlclose);
	R(pthread_create);
	R(pthread_setname_np);
	R(prctl);
	R(execve);
	R(execvpe);
	R(posix_spawn);
	R(posix_spawnp);
	R(pipe2);
	R(unshare);
	R(setns);
	R(_exit);
	R(_Exit);
#undef R
	if (!real._exit)
		real._exit = raw_exit;
	if (!real._Exit)
		real._Exit = raw_exit;
	state = 2;
	return 1;
}
