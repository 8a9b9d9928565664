/*
 * hooks.c - the interposed functions. Each is a few lines: call the real
 * function, then record (releases are recorded before the real call, so
 * the address cannot be reused by another thread in between).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "../stream.h"
#include "got.h"
#include "tracker.h"

#define EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifdef MEMRAY_TSAN
/* The ThreadSanitizer build (make tsan): the tracker's code is
 * instrumented and must not run in a thread before the sanitizer has set
 * that thread up (it allocates while it does). A thread is ready once it
 * runs its start routine (see pthread_create below); the main thread once
 * the tracker's constructor runs. These hooks are not instrumented. */
static __thread int tsan_ready __attribute__((tls_model("initial-exec")));
#define READY tsan_ready

void hooks_thread_ready(void)
{
	tsan_ready = 1;
}

#define TSAN 1
#else
#define READY 1
#define TSAN 0
#endif

static inline int recording(void)
{
	return likely(ACTIVE()) && !tracker_guard && READY;
}

#define NOINLINE __attribute__((noinline))

/* Whether an allocation of size bytes, which tracker_skip_alloc did not
 * pass straight on, is recorded. */
static inline int take_slow(size_t size)
{
	if (!recording()) {
		tracker_untake(size);
		return 0;
	}
	return tracker_take_slow(size);
}

/* malloc, free and calloc: a fast path that passes the call straight on
 * (a tail call, no frame), and the rest out of line. */
static NOINLINE void *malloc_slow(size_t size)
{
	if (unlikely(!real.malloc) && !tracker_resolve())
		return boot_alloc(size);
	if (!take_slow(size))
		return real.malloc(size);
	void *p = real.malloc(size);
	if (p)
		tracker_alloc(MR_MALLOC, p, size);
	return p;
}

EXPORT void *malloc(size_t size)
{
	if (tracker_skip_alloc(size))
		return real.malloc(size);
	return malloc_slow(size);
}

static NOINLINE void free_slow(void *p)
{
	if (!p || boot_owns(p) || (unlikely(!real.free) && !tracker_resolve()))
		return;
	if (recording())
		tracker_free(MR_FREE, p, 0);
	real.free(p);
}

EXPORT void free(void *p)
{
	/* a block of the bootstrap allocator is never skipped (see
	 * sample_setup) */
	if (tracker_skip_free(p))
		return real.free(p);
	free_slow(p);
}

/* total is n * size, which calloc checked does not overflow */
static NOINLINE void *calloc_slow(size_t n, size_t size, size_t total)
{
	if (unlikely(!real.calloc) && !tracker_resolve())
		return boot_alloc(total); /* static, so already zeroed */
	if (!take_slow(total))
		return real.calloc(n, size);
	void *p = real.calloc(n, size);
	if (p)
		tracker_alloc(MR_CALLOC, p, total);
	return p;
}

EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total))
		return real.calloc ? real.calloc(n, size) : NULL; /* fails */
	if (tracker_skip_alloc(total))
		return real.calloc(n, size);
	return calloc_slow(n, size, total);
}

/* realloc of a bootstrap block: move it to the real heap. */
static void *boot_move(void *old, size_t size)
{
	void *p = malloc(size);
	if (p) {
		size_t n = boot_size(old);
		memcpy(p, old, n < size ? n : size);
	}
	return p;
}

EXPORT void *realloc(void *old, size_t size)
{
	if (unlikely(!real.realloc) && !tracker_resolve())
		return old ? NULL : boot_alloc(size);
	if (unlikely(old && boot_owns(old)))
		return boot_move(old, size);
	if (!recording())
		return real.realloc(old, size);
	return tracker_realloc(MR_REALLOC, old, 1, size);
}

EXPORT void *reallocarray(void *old, size_t n, size_t size)
{
	size_t total;
	if (unlikely(!real.reallocarray) && !tracker_resolve())
		return NULL;
	if (unlikely(old && boot_owns(old))) {
		if (__builtin_mul_overflow(n, size, &total)) {
			errno = ENOMEM;
			return NULL;
		}
		return boot_move(old, total);
	}
	if (!recording())
		return real.reallocarray(old, n, size);
	return tracker_realloc(MR_REALLOCARRAY, old, n, size);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	if (tracker_skip_alloc(size))
		return real.posix_memalign(out, align, size);
	if (unlikely(!real.posix_memalign) && !tracker_resolve())
		return ENOMEM;
	if (!take_slow(size))
		return real.posix_memalign(out, align, size);
	int rc = real.posix_memalign(out, align, size);
	if (rc == 0)
		tracker_alloc(MR_POSIX_MEMALIGN, *out, size);
	return rc;
}

#define ALIGNED_HOOK(name, ALLOCATOR, params, args, size_expr) \
	EXPORT void *name params \
	{ \
		if (tracker_skip_alloc(size_expr)) \
			return real.name args; \
		if (unlikely(!real.name) && !tracker_resolve()) \
			return NULL; \
		if (!take_slow(size_expr)) \
			return real.name args; \
		void *p = real.name args; \
		if (p) \
			tracker_alloc(ALLOCATOR, p, size_expr); \
		return p; \
	}

ALIGNED_HOOK(aligned_alloc, MR_ALIGNED_ALLOC, (size_t align, size_t size), (align, size), size)
ALIGNED_HOOK(memalign, MR_MEMALIGN, (size_t align, size_t size), (align, size), size)
ALIGNED_HOOK(valloc, MR_VALLOC, (size_t size), (size), size)
ALIGNED_HOOK(pvalloc, MR_PVALLOC, (size_t size), (size), size)

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (unlikely(!real.mmap) && !tracker_resolve())
		return MAP_FAILED;
	void *p = real.mmap(addr, len, prot, flags, fd, off);
	if (recording() && p != MAP_FAILED && !tracker_own_call(__builtin_return_address(0)))
		tracker_alloc(MR_MMAP, p, len);
	return p;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (unlikely(!real.mmap64) && !tracker_resolve())
		return MAP_FAILED;
	void *p = real.mmap64(addr, len, prot, flags, fd, off);
	if (recording() && p != MAP_FAILED)
		tracker_alloc(MR_MMAP, p, len);
	return p;
}

EXPORT int munmap(void *addr, size_t len)
{
	if (unlikely(!real.munmap) && !tracker_resolve())
		return -1;
	if (recording() && !tracker_own_call(__builtin_return_address(0)))
		tracker_free(MR_MUNMAP, addr, len);
	return real.munmap(addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (unlikely(!real.mremap) && !tracker_resolve())
		return MAP_FAILED;
	if (!recording())
		return real.mremap(old, old_len, new_len, flags, new_addr);
	return tracker_mremap(old, old_len, new_len, flags, new_addr);
}

EXPORT void *dlopen(const char *file, int mode)
{
	if (unlikely(!real.dlopen) && !tracker_resolve())
		return NULL;
	/* recording or not, before and after (its constructors run inside):
	 * the unwinder's rules of an object unloaded are forgotten */
	unwind_flush();
	void *h = real.dlopen(file, mode);
	if (h)
		unwind_flush();
	if (recording() && h)
		tracker_modules_changed(0);
	return h;
}

EXPORT int dlclose(void *h)
{
	if (unlikely(!real.dlclose) && !tracker_resolve())
		return -1;
	int rc = real.dlclose(h);
	if (rc == 0)
		unwind_flush();
	if (recording() && rc == 0)
		tracker_modules_changed(1);
	return rc;
}

EXPORT int pthread_setname_np(unsigned long thread, const char *name)
{
	if (unlikely(!real.pthread_setname_np) && !tracker_resolve())
		return EAGAIN;
	int rc = real.pthread_setname_np(thread, name);
	if (recording() && rc == 0)
		tracker_thread_renamed(thread, name);
	return rc;
}

/* ---- threads: a Python thread starts under its threading.Thread name --- */

struct start {
	void *(*fn)(void *);
	void *arg;
	char name[]; /* "" or the name the thread starts with */
};

/* The new thread's start routine: announces the thread by the name it
 * was started with, then runs the program's routine by a tail call, so
 * that no frame of the tracker's stays on the thread's stack. */
static void *started(void *a)
{
	struct start *s = a;
	void *(*fn)(void *) = s->fn, *arg = s->arg;
#ifdef MEMRAY_TSAN
	tsan_ready = 1;
#endif
	if (s->name[0] && recording())
		tracker_thread_renamed(0, s->name);
	real.free(s);
	return fn(arg);
}

/* The interpreter starting a threading.Thread gives its name, which the
 * new thread is announced with before anything it allocates. */
EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (unlikely(!real.pthread_create) && !tracker_resolve())
		return EAGAIN;
	char name[256];
	int named = recording() &&
		    tracker_thread_starting(__builtin_return_address(0), name, sizeof(name));
	if (!named && !TSAN)
		return real.pthread_create(t, attr, fn, arg);
	size_t n = named ? strlen(name) + 1 : 1;
	struct start *s = real.malloc(sizeof(*s) + n);
	if (!s)
		return TSAN ? EAGAIN : real.pthread_create(t, attr, fn, arg);
	s->fn = fn;
	s->arg = arg;
	memcpy(s->name, named ? name : "", n);
	/* ThreadSanitizer's pthread_create (the real one here) ignores every
	 * synchronisation while it runs, glibc's allocation of the new
	 * thread's TLS included: recorded, that allocation's lock would be
	 * invisible to it, and later holders of the lock would seem to race
	 * with what the earlier ones published (tests/tsan.sh) */
	int guard = tracker_guard;
	if (TSAN)
		tracker_guard = 1;
	int rc = real.pthread_create(t, attr, started, s);
	tracker_guard = guard;
	if (rc)
		real.free(s);
	return rc;
}

EXPORT int prctl(int option, ...)
{
	va_list ap;
	va_start(ap, option);
	unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
	unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (unlikely(!real.prctl) && !tracker_resolve()) {
		errno = EAGAIN;
		return -1;
	}
	int rc = real.prctl(option, a2, a3, a4, a5);
	if (recording() && rc == 0 && option == PR_SET_NAME)
		tracker_thread_renamed(0, (const char *)a2);
	return rc;
}

/* ---- exec: the recorded process goes on recording in its new image ---- */

extern char **environ;

static int exec_with(int path_search, const char *file, char *const argv[], char *const envp[])
{
	if (unlikely(!real.execve) && !tracker_resolve())
		return -1;
	char **env = recording() ? tracker_exec_env(envp) : NULL;
	char *const *use = env ? env : envp;
	if (!env && recording() && tracker_spawn_env_needed(envp)) {
		/* a vfork child with an environment of its own: nothing may be
		 * allocated here, so the new one is built on the stack */
		size_t n = 0;
		while (envp && envp[n])
			n++;
		char *vec[n + SPAWN_EXTRA + 1];
		char text[3 * 4096 + 1024];
		char **spawn = tracker_spawn_env(envp, vec, n + SPAWN_EXTRA + 1, text, sizeof(text));
		if (spawn)
			return path_search ? real.execvpe(file, argv, spawn) : real.execve(file, argv, spawn);
	}
	int rc = path_search ? real.execvpe(file, argv, use) : real.execve(file, argv, use);
	if (env) {
		int e = errno;
		tracker_exec_failed(env);
		errno = e;
	}
	return rc;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_with(0, path, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return exec_with(0, path, argv, environ);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return exec_with(1, file, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return exec_with(1, file, argv, envp);
}

/* posix_spawn: glibc's child execs without going through execve's
 * symbol, so a followed program's spawned child is given the tracker's
 * variables here, in the parent, when its environment lacks them. */
static int spawn_with(int path_search, pid_t *pid, const char *file,
		      const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
		      char *const argv[], char *const envp[])
{
	if (unlikely(!real.posix_spawn || !real.posix_spawnp) && !tracker_resolve())
		return ENOSYS;
	char *const *use = envp;
	size_t n = 0;
	while (envp && envp[n])
		n++;
	char *vec[n + SPAWN_EXTRA + 1];
	char text[3 * 4096 + 1024];
	if (recording() && tracker_spawn_env_needed(envp)) {
		char **spawn = tracker_spawn_env(envp, vec, n + SPAWN_EXTRA + 1, text, sizeof(text));
		if (spawn)
			use = spawn;
	}
	return path_search ? real.posix_spawnp(pid, file, fa, attr, argv, use)
			   : real.posix_spawn(pid, file, fa, attr, argv, use);
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn_with(0, pid, path, fa, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn_with(1, pid, file, fa, attr, argv, envp);
}

/* pipe2: passed through, except for the unwinder's own pipe, made while
 * the unwinder starts (stack.c), which goes out of the program's way as
 * the tracker's other descriptors do. */
EXPORT int pipe2(int fds[2], int flags)
{
	if (unlikely(!real.pipe2) && !tracker_resolve()) {
		errno = ENOSYS;
		return -1;
	}
	int rc = real.pipe2(fds, flags);
	if (rc == 0 && unlikely(hiding_pipes)) {
		int a = fd_out_of_way(fds[0], flags & O_CLOEXEC);
		int b = a >= 0 ? fd_out_of_way(fds[1], flags & O_CLOEXEC) : -1;
		if (b >= 0) {
			close(fds[0]);
			close(fds[1]);
			fds[0] = a;
			fds[1] = b;
		} else if (a >= 0) {
			close(a);
		}
	}
	return rc;
}

/* unshare and setns into a new user namespace (or unsharing what
 * threads share) need a process of one thread: the tracker's sampler
 * steps aside for the call. The kernel counts a thread that has just left
 * for a moment longer, so a refusal then is tried again, for at most
 * 200 ms. */
static int one_thread_call(int (*call)(int, int), int a, int b, int needs)
{
	int paused = needs && READY ? sampler_pause() : 0;
	int rc = call(a, b);
	for (int i = 0; paused && rc < 0 && errno == EINVAL && i < 200; i++) {
		struct timespec t = { 0, 1000000 };
		nanosleep(&t, NULL);
		rc = call(a, b);
	}
	int e = errno;
	if (paused)
		sampler_resume();
	errno = e;
	return rc;
}

static int call_unshare(int flags, int unused)
{
	(void)unused;
	return real.unshare(flags);
}

EXPORT int unshare(int flags)
{
	if (unlikely(!real.unshare) && !tracker_resolve()) {
		errno = ENOSYS;
		return -1;
	}
	return one_thread_call(call_unshare, flags, 0,
			       flags & (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM));
}

EXPORT int setns(int fd, int nstype)
{
	if (unlikely(!real.setns) && !tracker_resolve()) {
		errno = ENOSYS;
		return -1;
	}
	/* (nstype 0 lets the kernel find the kind of namespace fd is) */
	return one_thread_call(real.setns, fd, nstype, nstype == 0 || (nstype & CLONE_NEWUSER));
}

/* The execl family: the variadic arguments gathered into an argv. */
#define GATHER_ARGS(first, ap, argv, extra) \
	size_t n_ = 1; \
	va_start(ap, first); \
	while (va_arg(ap, const char *)) \
		n_++; \
	va_end(ap); \
	const char *argv[n_ + 1]; \
	argv[0] = first; \
	va_start(ap, first); \
	for (size_t i_ = 1; i_ <= n_; i_++) \
		argv[i_] = va_arg(ap, const char *); \
	extra; \
	va_end(ap)

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	GATHER_ARGS(arg, ap, argv, (void)0);
	return exec_with(0, path, (char *const *)argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	GATHER_ARGS(arg, ap, argv, (void)0);
	return exec_with(1, file, (char *const *)argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	char *const *envp;
	GATHER_ARGS(arg, ap, argv, envp = va_arg(ap, char *const *));
	return exec_with(0, path, (char *const *)argv, envp);
}

EXPORT void _exit(int status)
{
	if (READY)
		tracker_finish();
	if (!real._exit)
		tracker_resolve();
	real._exit(status);
}

EXPORT void _Exit(int status)
{
	if (READY)
		tracker_finish();
	if (!real._Exit)
		tracker_resolve();
	real._Exit(status);
}

/* ---- attaching: the hooks as GOT entries take them ---------------------
 * Hidden aliases, so that the addresses are this object's own functions
 * even where the program's definitions come first in the lookup order
 * (a tracker dlopen'ed into a running program). Not dlopen and dlclose:
 * glibc's dlopen searches the caller's RPATH, which through a hook would
 * be the tracker's; the sampler notices new objects within a tick. */

#define HOOK_ALIAS(name) \
	__typeof__(name) hook_##name __attribute__((alias(#name), copy(name), visibility("hidden")));
#define HOOKS(X) \
	X(malloc) X(free) X(calloc) X(realloc) X(reallocarray) X(posix_memalign) \
	X(aligned_alloc) X(memalign) X(valloc) X(pvalloc) X(mmap) X(mmap64) X(munmap) \
	X(mremap) X(pthread_create) X(pthread_setname_np) X(prctl) X(execve) X(execv) X(execvp) X(execvpe) \
	X(execl) X(execlp) X(execle) X(_exit) X(_Exit)
HOOKS(HOOK_ALIAS)
#define HOOK_ENTRY(name) { #name, (void *)hook_##name },
static const struct got_hook hook_table[] = { HOOKS(HOOK_ENTRY) };
const struct got_hook *const tracker_hooks = hook_table;
const size_t tracker_nhooks = sizeof(hook_table) / sizeof(hook_table[0]);

/* ---- Python's object allocators, hooked in a running interpreter ----------
 *
 * Under pymalloc, objects of 512 bytes or less live inside arenas that
 * pymalloc maps itself: the allocator hooks see the arenas, never the
 * objects. A program started with PYTHONMALLOC=malloc needs nothing more;
 * for one that was not, memray_start_ex(MEMRAY_PYTHON_ALLOCATORS) wraps
 * the interpreter's PYMEM_DOMAIN_MEM and PYMEM_DOMAIN_OBJ allocators, as
 * tracemalloc does: each wrapper calls the allocator it replaced, so the
 * memory's layout is unchanged and the wrappers can go at any time, and
 * records the block as a malloc-family event. The arena allocator is
 * wrapped too, so that the arenas mapped and unmapped in the window are
 * not recorded beside the objects they hold (no byte counted twice).
 * Installing and removing them needs the GIL, which the caller holds.
 *
 * Others may wrap the same allocators (tracemalloc, started or stopped
 * inside a window): a wrapper is taken off only while it is the one
 * installed (else it stays, passing calls on), and each installation
 * keeps the allocator it replaced in a slot of its own, never reused,
 * so that every chain of wrappers stays well formed. The wrappers record
 * only while a window asks for it (py_tracing), and only the outermost
 * one: each calls what it replaced under the guard. */

struct pyarena {
	void *ctx;
	void *(*alloc)(void *ctx, size_t n);
	void (*free)(void *ctx, void *p, size_t n);
};

enum { PYMEM_DOMAIN_MEM = 1, PYMEM_DOMAIN_OBJ = 2, PY_SLOTS = 32 };

static struct pymem py_slots[PY_SLOTS];
static struct pyarena py_arena_slots[PY_SLOTS];
static int py_nslots, py_narena_slots;
static int py_tracing;

static int py_recording(void)
{
	return __atomic_load_n(&py_tracing, __ATOMIC_RELAXED) && recording();
}

/* A block the allocator o gave, recorded as allocator's. */
static void py_record(const struct pymem *o, int allocator, void *p, size_t n)
{
	tracker_pymem = o;
	tracker_alloc(allocator, p, n);
	tracker_pymem = NULL;
}

static void *py_malloc(void *ctx, size_t n)
{
	const struct pymem *o = ctx;
	int take = py_recording() && tracker_take(n);
	int guard = tracker_guard;
	tracker_guard = 1;
	void *p = o->malloc(o->ctx, n);
	tracker_guard = guard;
	if (p && take)
		py_record(o, MR_MALLOC, p, n);
	return p;
}

static void *py_calloc(void *ctx, size_t nelem, size_t elsize)
{
	const struct pymem *o = ctx;
	size_t total;
	int take = py_recording() && !__builtin_mul_overflow(nelem, elsize, &total) &&
		   tracker_take(total);
	int guard = tracker_guard;
	tracker_guard = 1;
	void *p = o->calloc(o->ctx, nelem, elsize);
	tracker_guard = guard;
	if (p && take)
		py_record(o, MR_CALLOC, p, total);
	return p;
}

static void *py_realloc(void *ctx, void *old, size_t n)
{
	const struct pymem *o = ctx;
	if (!py_recording()) {
		int guard = tracker_guard;
		tracker_guard = 1;
		void *p = o->realloc(o->ctx, old, n);
		tracker_guard = guard;
		return p;
	}
	tracker_pymem = o;
	void *p = tracker_pymem_realloc(old, n);
	tracker_pymem = NULL;
	return p;
}

static void py_free(void *ctx, void *p)
{
	const struct pymem *o = ctx;
	/* written before the block can be handed to anyone else */
	if (p && !tracker_skip_free(p) && py_recording()) {
		tracker_pymem = o;
		tracker_free(MR_FREE, p, 0);
		tracker_pymem = NULL;
	}
	int guard = tracker_guard;
	tracker_guard = 1;
	o->free(o->ctx, p);
	tracker_guard = guard;
}

static void *py_arena_alloc(void *ctx, size_t n)
{
	const struct pyarena *o = ctx;
	int guard = tracker_guard;
	tracker_guard = 1;
	void *p = o->alloc(o->ctx, n);
	tracker_guard = guard;
	return p;
}

static void py_arena_free(void *ctx, void *p, size_t n)
{
	const struct pyarena *o = ctx;
	int guard = tracker_guard;
	tracker_guard = 1;
	o->free(o->ctx, p, n);
	tracker_guard = guard;
}

static struct {
	void (*get)(int, struct pymem *);
	void (*set)(int, struct pymem *);
	void (*aget)(struct pyarena *);
	void (*aset)(struct pyarena *);
} pyapi;

int hooks_python_allocators_possible(void)
{
	if (!pyapi.get) {
		pyapi.aget = (void (*)(struct pyarena *))dlsym(RTLD_DEFAULT, "PyObject_GetArenaAllocator");
		pyapi.aset = (void (*)(struct pyarena *))dlsym(RTLD_DEFAULT, "PyObject_SetArenaAllocator");
		pyapi.set = (void (*)(int, struct pymem *))dlsym(RTLD_DEFAULT, "PyMem_SetAllocator");
		pyapi.get = (void (*)(int, struct pymem *))dlsym(RTLD_DEFAULT, "PyMem_GetAllocator");
	}
	return pyapi.get && pyapi.set && pyapi.aget && pyapi.aset;
}

int hooks_python_allocators(int on)
{
	if (!hooks_python_allocators_possible())
		return -1;
	if (!on) {
		__atomic_store_n(&py_tracing, 0, __ATOMIC_RELAXED);
		for (int d = PYMEM_DOMAIN_MEM; d <= PYMEM_DOMAIN_OBJ; d++) {
			struct pymem cur;
			pyapi.get(d, &cur);
			if (cur.malloc == py_malloc) /* ours, on top: what it replaced goes back */
				pyapi.set(d, (struct pymem *)cur.ctx);
		}
		struct pyarena a;
		pyapi.aget(&a);
		if (a.alloc == py_arena_alloc)
			pyapi.aset((struct pyarena *)a.ctx);
		return 0;
	}
	for (int d = PYMEM_DOMAIN_MEM; d <= PYMEM_DOMAIN_OBJ; d++) {
		struct pymem cur;
		pyapi.get(d, &cur);
		/* ours already on top (left on by a window whose wrappers were
		 * covered, then put back), or no slot left: as it is */
		if (cur.malloc == py_malloc || py_nslots == PY_SLOTS)
			continue;
		struct pymem *slot = &py_slots[py_nslots++];
		*slot = cur;
		struct pymem w = { slot, py_malloc, py_calloc, py_realloc, py_free };
		pyapi.set(d, &w);
	}
	struct pyarena a;
	pyapi.aget(&a);
	if (a.alloc != py_arena_alloc && py_narena_slots < PY_SLOTS) {
		struct pyarena *slot = &py_arena_slots[py_narena_slots++];
		*slot = a;
		struct pyarena w = { slot, py_arena_alloc, py_arena_free };
		pyapi.aset(&w);
	}
	__atomic_store_n(&py_tracing, 1, __ATOMIC_RELAXED);
	return 0;
}

void hooks_python_allocators_forget(void)
{
	__atomic_store_n(&py_tracing, 0, __ATOMIC_RELAXED);
}
