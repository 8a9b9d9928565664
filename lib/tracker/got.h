/*
 * got.h - redirecting a running program's allocator calls without
 * preloading: the GOT entries of every loaded object that name a hooked
 * function are pointed at the hook, and put back exactly on restore.
 *
 * Used by `memray-record --pid`, where the tracker is dlopen'ed into a
 * process that is already running (see attach.c, memray_attach). Two
 * kinds of entry are patched: JUMP_SLOT (calls through the PLT) and
 * GLOB_DAT (calls and function pointers through the GOT, which is how
 * glibc calls malloc from inside itself). The loader, the vDSO and the
 * caller's own object are left alone.
 *
 * An object is patched only while this code holds a reference to it
 * (dlopen with RTLD_NOLOAD), which waits for a dlopen in progress to
 * finish relocating it and keeps it from being unloaded meanwhile.
 * Read-only pages (RELRO) are made writable for the one store and given
 * back their protection.
 */
#ifndef MEMRAY_GOT_H
#define MEMRAY_GOT_H

#include <stddef.h>

struct got_hook {
	const char *name;
	void *hook;
};

/* The address of the first definition of name in the program's global
 * lookup order, skipping undefined symbols (an executable's PLT stubs)
 * and the object that contains `self`. NULL if there is none. */
void *got_lookup(const char *name, const void *self);

/* Points every entry for hooks[0..n) in every loaded object not yet
 * patched (except the one containing `self`) at its hook. Objects loaded
 * since the last call are patched by calling it again. Returns the number
 * of entries changed, or -1 if the table could not grow. */
int got_patch(const struct got_hook *hooks, size_t n, const void *self);

/* Puts every patched entry of every object still loaded back to the value
 * it had, unless something else has changed it since. Returns the number
 * of entries restored. After it got_patch starts afresh. */
int got_restore(void);

/* In the child of a fork (an atfork handler): the lock again usable. */
void got_forked(void);

#endif
