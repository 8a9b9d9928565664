/*
 * threads.c - the threads of the stream: each thread is announced (a
 * THREAD record with its tid and name) before its first event, made the
 * stream's current thread before each of its events, and renamed when
 * the program names it.
 *
 * Owns: ts (each thread's state: its index in the stream), the table of
 * the stream's threads, thread_key (whose destructor says a thread ends).
 * Calls: the writer (mr_w_thread, mr_w_switch, mr_w_thread_name, under
 * the lock), stack.c (thread_fresh, stack_thread_exit), python.c
 * (python_thread_starting).
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "python.h"

__thread struct tstate ts __attribute__((tls_model("initial-exec")));
pthread_key_t thread_key;

struct thread_entry {
	pthread_t self;
	uint32_t index;
	uint64_t name_hash; /* of the name last recorded: a name set again
			     * (the OS name and Python's, on 3.14) is not
			     * recorded twice */
};
static struct thread_entry *threads;
static size_t nthreads, threads_cap;

/* thread_key's destructor: a thread ends (arg is its index). */
void thread_gone(void *arg)
{
	uint32_t index = (uint32_t)(uintptr_t)arg;
	stack_thread_exit();
	/* a signal handler's allocation meanwhile is not recorded: it would
	 * wait for the lock this thread holds, or, the only ring's thread
	 * leaving the counter open (order_alone), be numbered into a ring
	 * about to go */
	int guard = tracker_guard;
	tracker_guard = 1;
	lock_stream();
	for (size_t i = 0; i < nthreads; i++)
		if (threads[i].index == index) {
			threads[i] = threads[--nthreads];
			break;
		}
	order_ring_detach();
	unlock();
	tracker_guard = guard;
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* Makes the calling thread the stream's current thread, announcing it
 * first if it is new. Locked. */
void thread_announce(const char *given)
{
	thread_fresh();
	if (!ts.index) {
		char name[17] = "";
		syscall(SYS_prctl, PR_GET_NAME, name, 0, 0, 0);
		const char *as = given ? given : name;
		ts.index = mr_w_thread(&writer, (uint64_t)syscall(SYS_gettid), as);
		if (nthreads == threads_cap) {
			size_t cap = threads_cap ? threads_cap * 2 : 64;
			struct thread_entry *t = raw_map(cap * sizeof(*t));
			if (t) {
				if (threads) {
					memcpy(t, threads, nthreads * sizeof(*t));
					real.munmap(threads, threads_cap * sizeof(*t));
				}
				threads = t;
				threads_cap = cap;
			}
		}
		if (nthreads < threads_cap) {
			threads[nthreads++] = (struct thread_entry){ pthread_self(), ts.index, name_hash(as) };
			pthread_setspecific(thread_key, (void *)(uintptr_t)ts.index);
		}
	}
	mr_w_switch(&writer, ts.index);
	order_ring_attach();
}

/* Forgets the threads of an earlier stream. */
void threads_forget(void)
{
	nthreads = 0;
}

/* Records a new name of a thread (0: the calling one), unless it is the
 * name the thread already has. */
void tracker_thread_renamed(unsigned long thread, const char *name)
{
	int guard = tracker_guard;
	tracker_guard = 1;
	lock_stream();
	if (ACTIVE()) {
		int self = thread == 0 || thread == (unsigned long)pthread_self();
		if (self && !ts.index) {
			thread_announce(name);
		} else {
			struct thread_entry *e = NULL;
			for (size_t i = 0; i < nthreads; i++)
				if (self ? threads[i].index == ts.index
					 : (unsigned long)threads[i].self == thread)
					e = &threads[i];
			uint64_t h = name_hash(name);
			if (e && e->name_hash != h) {
				e->name_hash = h;
				mr_w_thread_name(&writer, e->index, name);
			} else if (!e && self) {
				mr_w_thread_name(&writer, ts.index, name);
			}
		}
	}
	unlock();
	tracker_guard = guard;
}

int tracker_thread_starting(const void *caller, char *name, size_t cap)
{
	/* an attached program, or one recording itself through the API,
	 * keeps its threading module as it is */
	return python_thread_starting(caller, name, cap, !attached && !api_on);
}
