/*
 * tracker.h - what the parts of libmemray-tracker.so share.
 *
 * The tracker is preloaded into the program by memray-record. hooks.c
 * interposes the allocator functions and calls the tracker_* functions
 * below; tracker.c owns the one writer, its lock, the stack trie, threads,
 * modules and the sampler thread.
 *
 * Rule for everything here: a hook first calls the real function (or for a
 * release, records first), then records only when tracker_active and the
 * thread's guard is clear. Recording sets the guard, so any allocation the
 * tracker itself causes (libunwind, dl_iterate_phdr, pthread) is passed
 * straight through, which also makes an allocation from a signal handler
 * that interrupts the tracker harmless: it is simply not recorded.
 */
#ifndef MEMRAY_TRACKER_H
#define MEMRAY_TRACKER_H

/* What runs before ThreadSanitizer's runtime has set a thread up stays
 * uninstrumented in the sanitizer build (make tsan). */
#ifdef MEMRAY_TSAN
#define NO_TSAN __attribute__((no_sanitize_thread))
void hooks_thread_ready(void);
#else
#define NO_TSAN
#endif

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The functions being interposed, as found with dlsym(RTLD_NEXT). */
struct real_fns {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*reallocarray)(void *, size_t, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	void *(*mmap64)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	size_t (*malloc_usable_size)(void *);
	void *(*dlopen)(const char *, int);
	int (*dlclose)(void *);
	int (*pthread_setname_np)(unsigned long, const char *);
	int (*prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	void (*_exit)(int) __attribute__((noreturn));
	void (*_Exit)(int) __attribute__((noreturn));
};

extern struct real_fns real;
extern int tracker_active;
/* Read without the lock by every hook and the sampler: relaxed atomics
 * (plain moves on x86-64 and aarch64), so the sanitizer build sees no
 * data race. */
#define ACTIVE() __atomic_load_n(&tracker_active, __ATOMIC_RELAXED)
#define SET_ACTIVE(v) __atomic_store_n(&tracker_active, (v), __ATOMIC_RELAXED)
extern __thread int tracker_guard __attribute__((tls_model("initial-exec")));

/* Resolves `real`; returns 0 while resolution is in progress (dlsym's own
 * calloc), when the caller must use the bootstrap allocator. */
int tracker_resolve(void);
void *boot_alloc(size_t size);
int boot_owns(const void *p);
size_t boot_size(const void *p);

/* Recording. Each sets and clears the guard itself. */
void tracker_alloc(int allocator, void *p, size_t size);
void tracker_free(int allocator, void *p, size_t len);
/* realloc and mremap: the real call happens inside, under the tracker's
 * lock, so no other thread can be handed `old` before its release is
 * recorded. */
void *tracker_realloc(int allocator, void *old, size_t nmemb, size_t size);
void *tracker_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
void tracker_modules_changed(int closed);
void tracker_thread_renamed(unsigned long thread, const char *name);
void tracker_finish(void);
int tracker_own_call(const void *caller);
/* Before an exec in the recorded process: ends this image's records with
 * an EXEC record, lets the stream's descriptor survive the exec and
 * returns envp plus what the new image's tracker needs (NULL: exec
 * unchanged, as in a forked child). tracker_exec_failed undoes it. */
char **tracker_exec_env(char *const envp[]);
void tracker_exec_failed(char **env);

/* The hooks by name, for GOT patching when attached (hooks.c). */
struct got_hook;
extern const struct got_hook *const tracker_hooks;
extern const size_t tracker_nhooks;

#endif
