/*
 * tracker.h - what the parts of libmemray-tracker.so share.
 *
 * The tracker is preloaded into the program by memray-record. hooks.c
 * interposes the allocator functions and calls the tracker_* functions
 * below; the recording parts behind them (the one writer and its lock,
 * the stack trie, threads, modules, the sampler thread, ...) each have a
 * file of their own, listed in internal.h.
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

#include <pthread.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Everything declared here is this library's own: the compiler may then
 * reach it directly, without going through the GOT. */
#pragma GCC visibility push(hidden)

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
	int (*pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	int (*pthread_setname_np)(unsigned long, const char *);
	int (*prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*pipe2)(int[2], int);
	int (*unshare)(int);
	int (*setns)(int, int);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
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
#define BOOT_SIZE (256 * 1024)
extern char boot_buf[BOOT_SIZE];
static inline int boot_owns(const void *p)
{
	return (uintptr_t)p - (uintptr_t)boot_buf < BOOT_SIZE;
}
size_t boot_size(const void *p);

/* While a wrapper of Python's object allocators records (hooks.c): the
 * allocator it wraps, a struct pymem; NULL otherwise. Its blocks are not
 * malloc's: their usable size is not asked, and realloc is its own. */
struct pymem { /* CPython's PyMemAllocatorEx */
	void *ctx;
	void *(*malloc)(void *ctx, size_t n);
	void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
	void *(*realloc)(void *ctx, void *p, size_t n);
	void (*free)(void *ctx, void *p);
};
extern __thread const struct pymem *tracker_pymem __attribute__((tls_model("initial-exec")));
/* Wraps (on) or unwraps Python's PYMEM_DOMAIN_MEM and _OBJ allocators and
 * its arena allocator; the caller holds the GIL. -1 when the process has
 * no Python C-API. */
int hooks_python_allocators(int on);
/* Whether the process has the C-API hooks_python_allocators needs. */
int hooks_python_allocators_possible(void);
/* In a forked child not followed: the wrappers record nothing more. */
void hooks_python_allocators_forget(void);

/* Recording. Each sets and clears the guard itself. */
void tracker_alloc(int allocator, void *p, size_t size);
void tracker_free(int allocator, void *p, size_t len);
/* realloc and mremap: the real call happens inside, under the tracker's
 * lock, so no other thread can be handed `old` before its release is
 * recorded. */
void *tracker_realloc(int allocator, void *old, size_t nmemb, size_t size);
/* realloc of a Python allocator, while recording (tracker_pymem set). */
void *tracker_pymem_realloc(void *old, size_t size);
void *tracker_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
void tracker_modules_changed(int closed);
/* Objects are being loaded or unloaded: the unwinder forgets its rules
 * (unwind.c). */
void unwind_flush(void);
void tracker_thread_renamed(unsigned long thread, const char *name);
/* From a signal handler, the signal sig about to end the process: ends
 * its stream with a SIGNAL record and the trailer and returns 0; or, when
 * the interrupted code of this thread holds the lock, returns 1: the
 * signal is raised again when the lock is released, and the handler must
 * return. Returns 0 without ending the stream when another thread keeps
 * the lock for 2 s. */
int tracker_signal_end(int sig);
/* signals.c: stands in for the default action of the signals that end
 * the process, so that it leaves a complete stream. */
void signals_start(void);
/* The calling thread is about to start another one; caller is the
 * return address of its pthread_create call. Returns 1 with the name the
 * new thread starts with in name (fewer than cap bytes), else 0. */
int tracker_thread_starting(const void *caller, char *name, size_t cap);
void tracker_finish(void);
int tracker_own_call(const void *caller);
/* Before an exec in the recorded process: ends this image's records with
 * an EXEC record, lets the stream's descriptor survive the exec and
 * returns envp plus what the new image's tracker needs (NULL: exec
 * unchanged, as in a forked child). tracker_exec_failed undoes it. */
char **tracker_exec_env(char *const envp[]);
void tracker_exec_failed(char **env);
/* A followed program's child (made by vfork, or starting a program with
 * posix_spawn) given an environment without the tracker's variables:
 * whether it needs them, and envp with them, built in vec (envp's count
 * plus SPAWN_EXTRA entries) and text without allocating (NULL: does not
 * fit; start it unchanged). */
#define SPAWN_EXTRA 12
int tracker_spawn_env_needed(char *const envp[]);
char **tracker_spawn_env(char *const envp[], char **vec, size_t cap, char *text, size_t tcap);
/* sampler.c: the sampler thread stopped for a call that needs the
 * process to have one thread (1 if it ran), and started again. */
int sampler_pause(void);
void sampler_resume(void);
/* sampler.c: open(2) for the tracker's own use, never under 0-2. */
int quiet_open(const char *path, int flags);
/* sink.c: a copy of fd just above the soft limit of open files, or -1;
 * a copy of fd out of the program's way, above it or high below it. */
int fd_above_limit(int fd, int cloexec);
int fd_out_of_way(int fd, int cloexec);
/* stack.c: set while the unwinder starts, so that the pipe it opens goes
 * out of the program's way (hooks.c's pipe2). */
extern __thread int hiding_pipes __attribute__((tls_model("initial-exec")));

/* Sampling (memray-record --sample-bytes; sample.c). The hooks' fast
 * path: an allocation goes straight to the real one while the thread's
 * countdown to its next sampled byte stays above tracker_sample_floor (0
 * when sampling; never otherwise), and a release while its address's
 * counter in tracker_filter is 0 (a filter of one counter at 1 when not
 * sampling). Everything else takes the slow path. */
struct sample_filter {
	uint64_t mask;
	uint16_t slot[];
};
extern uint64_t tracker_sample_bytes; /* the mean gap; 0: every allocation */
extern int64_t tracker_sample_floor;
extern struct sample_filter *tracker_filter;
extern __thread int64_t tracker_sample_left __attribute__((tls_model("initial-exec")));

static inline int tracker_sampling(void)
{
	return __atomic_load_n(&tracker_sample_bytes, __ATOMIC_RELAXED) != 0;
}

/* Heap blocks are 16-byte aligned: the address bits above those pick the
 * counter (blocks within 1 MiB of each other never share one). */
static inline size_t sample_slot(const struct sample_filter *f, uintptr_t a)
{
	return (size_t)(a >> 4) & f->mask;
}

/* Whether an allocation of size bytes is certainly not recorded (it is
 * counted down either way). */
static inline int tracker_skip_alloc(size_t size)
{
	if (__builtin_expect((int64_t)size < 0, 0))
		return 0; /* fails anyway: the slow way, the countdown untouched */
	int64_t left = (int64_t)((uint64_t)tracker_sample_left - size);
	tracker_sample_left = left;
	return __builtin_expect(left > __atomic_load_n(&tracker_sample_floor, __ATOMIC_RELAXED), 1);
}

/* Whether the release of heap block p is certainly not recorded. */
static inline int tracker_skip_free(const void *p)
{
	const struct sample_filter *f = __atomic_load_n(&tracker_filter, __ATOMIC_RELAXED);
	return __builtin_expect(!__atomic_load_n(&f->slot[sample_slot(f, (uintptr_t)p)],
						 __ATOMIC_RELAXED), 1);
}

/* After tracker_skip_alloc said no, while recording: whether the
 * allocation is recorded (every one when not sampling). */
int tracker_take_slow(size_t size);
/* The same from the start, while recording. */
static inline int tracker_take(size_t size)
{
	return !tracker_skip_alloc(size) && tracker_take_slow(size);
}
/* After tracker_skip_alloc said no, when not recording: the allocation
 * does not count. */
static inline void tracker_untake(size_t size)
{
	if ((int64_t)size >= 0)
		tracker_sample_left = (int64_t)((uint64_t)tracker_sample_left + size);
}

/* The hooks by name, for GOT patching when attached (hooks.c). */
struct got_hook;
extern const struct got_hook *const tracker_hooks;
extern const size_t tracker_nhooks;

#pragma GCC visibility pop

#endif
