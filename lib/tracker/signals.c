/*
 * signals.c - a program ended by a signal leaves a complete stream.
 *
 * A signal whose default action ends the process (SIGINT, SIGTERM,
 * SIGHUP, ...) would end it without running an exit handler, so the
 * tracker's last records and its trailer would be lost: the stream of a
 * server stopped with Ctrl-C, or of a pool worker its pool terminates,
 * would read as truncated. So while the program leaves such a signal at
 * its default action, the tracker's handler stands in for the default: it
 * writes a SIGNAL record and the trailer, puts the default action back
 * and raises the signal again, so the process ends by it exactly as it
 * would have (same status, same core dump).
 *
 * The program never sees the stand-in: sigaction, signal, bsd_signal,
 * sysv_signal and sigset report the default action for it, with the
 * flags and mask the program last gave; a handler or SIG_IGN the program
 * sets replaces the stand-in for real, and going back to SIG_DFL puts the
 * stand-in back. That last case is how CPython ends after an uncaught
 * KeyboardInterrupt: it sets SIGINT to SIG_DFL and kills itself with it.
 * Whether the stand-in is installed is asked of the kernel each time, so
 * an action set some other way (a raw system call) is seen as it is.
 *
 * The stand-in's handler returns only when the interrupted code is the
 * tracker's own, holding its lock (tracker_signal_end): it is installed
 * without SA_RESTART, so that a write the lock holder is blocked in (a
 * reader that stopped reading) ends, and the signal is raised again when
 * the lock is let go.
 *
 * Only where memray-record preloaded the tracker into the program (not
 * when it is attached to a running one, nor for the in-process API), and
 * never for a signal the program does not leave at its default when the
 * tracker starts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tracker.h"

#define EXPORT __attribute__((visibility("default")))

/* The signals stood in for: those whose default action ends the process
 * and that come from outside or from the program itself, not from a
 * fault (SIGSEGV and the like are left alone: the tracker may be what
 * faulted) nor from a broken pipe (the tracker's own writes block it). */
static const int handled[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM };

static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static sighandler_t (*real_signal)(int, sighandler_t);

/* Per signal, while the stand-in is installed: the action the program
 * believes is installed (SIG_DFL, with its flags and mask). */
static struct sigaction seen[NSIG];
static int standing; /* stand-ins are used in this process at all */
static pid_t standing_pid; /* this process's: a vfork child shares seen[] */
/* The flags the C library adds to every action it installs (SA_RESTORER
 * on x86-64), which the program reads back with its own. */
static int added_flags;

static int is_handled(int sig)
{
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		if (handled[i] == sig)
			return 1;
	return 0;
}

static int resolve(void)
{
	if (!real_sigaction)
		real_sigaction = (__typeof__(real_sigaction))dlsym(RTLD_NEXT, "sigaction");
	if (!real_signal)
		real_signal = (__typeof__(real_signal))dlsym(RTLD_NEXT, "signal");
	return real_sigaction && real_signal;
}

static void stand_in(int sig);

/* What sigaction would read back after installing act: its flags with
 * the library's own, its mask without what cannot be blocked. */
static void as_installed(struct sigaction *act)
{
	act->sa_flags |= added_flags;
	sigdelset(&act->sa_mask, SIGKILL);
	sigdelset(&act->sa_mask, SIGSTOP);
}

/* Installs the stand-in for sig; the program's view is view, as
 * installed. */
static int take(int sig, const struct sigaction *view)
{
	if (getpid() != standing_pid)
		return -1;
	struct sigaction sa, back;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stand_in;
	sigfillset(&sa.sa_mask); /* nothing else runs in the thread meanwhile */
	seen[sig] = *view;
	if (real_sigaction(sig, &sa, NULL) < 0)
		return -1;
	if (real_sigaction(sig, NULL, &back) == 0)
		added_flags = back.sa_flags;
	return 0;
}

/* The stand-in's handler: ends the stream with the signal, then the
 * default action. Async-signal-safe: tracker_signal_end only waits
 * briefly for the lock and writes with write(2). */
static void stand_in(int sig)
{
	int e = errno;
	if (tracker_signal_end(sig)) {
		errno = e;
		return; /* raised again when the tracker lets go of its lock */
	}
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	real_sigaction(sig, &dfl, NULL);
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL); /* the process ends here */
	errno = e;
}

static void child(void)
{
	standing_pid = getpid();
}

/* Whether the stand-in is sig's action now (asked of the kernel). */
static int standing_in(int sig)
{
	struct sigaction cur;
	return real_sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
	       cur.sa_handler == stand_in;
}

void signals_start(void)
{
	if (!resolve())
		return;
	standing_pid = getpid();
	pthread_atfork(NULL, NULL, child);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
		int sig = handled[i];
		struct sigaction cur;
		if (real_sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_handler == SIG_DFL)
			take(sig, &cur);
	}
	standing = 1;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (!resolve()) {
		errno = ENOSYS;
		return -1;
	}
	if (!standing || sig <= 0 || sig >= NSIG || !is_handled(sig))
		return real_sigaction(sig, act, old);
	struct sigaction want;
	if (act)
		want = *act; /* act and old may be the same */
	int dfl = act && want.sa_handler == SIG_DFL;
	if (standing_in(sig)) {
		if (old)
			*old = seen[sig];
		if (!act)
			return 0;
		if (dfl && getpid() == standing_pid) {
			as_installed(&want);
			seen[sig] = want;
			return 0;
		}
		return real_sigaction(sig, &want, NULL);
	}
	int rc = real_sigaction(sig, act ? &want : NULL, old);
	if (rc == 0 && dfl) {
		as_installed(&want);
		take(sig, &want);
	}
	return rc;
}

/* An action set through sigaction above, as glibc's functions set it;
 * the previous handler, or SIG_ERR. */
static sighandler_t set_handler(int sig, sighandler_t handler, int flags, int block_it)
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	if (block_it)
		sigaddset(&sa.sa_mask, sig);
	sa.sa_flags = flags;
	if (sigaction(sig, &sa, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

static int passes(int sig)
{
	return !standing || sig <= 0 || sig >= NSIG || !is_handled(sig);
}

/* signal(2) and bsd_signal(3) as glibc has them (BSD semantics: the
 * handler stays, system calls restart, the signal is blocked while its
 * handler runs). */
EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	if (!resolve())
		return SIG_ERR;
	if (passes(sig))
		return real_signal(sig, handler);
	return set_handler(sig, handler, SA_RESTART, 1);
}

EXPORT sighandler_t bsd_signal(int sig, sighandler_t handler)
{
	return signal(sig, handler);
}

/* System V semantics: the action is reset when the handler runs, which
 * may be interrupted by the same signal. */
EXPORT sighandler_t sysv_signal(int sig, sighandler_t handler)
{
	if (!resolve())
		return SIG_ERR;
	if (passes(sig)) {
		sighandler_t (*next)(int, sighandler_t) =
			(__typeof__(next))dlsym(RTLD_NEXT, "sysv_signal");
		return next ? next(sig, handler) : SIG_ERR;
	}
	return set_handler(sig, handler, SA_RESETHAND | SA_NODEFER, 0);
}

/* sigset(3): SIG_HOLD blocks the signal, anything else is installed and
 * the signal unblocked; the answer is SIG_HOLD if it was blocked. */
EXPORT sighandler_t sigset(int sig, sighandler_t disp)
{
	if (!resolve())
		return SIG_ERR;
	if (passes(sig) || disp == SIG_HOLD) {
		sighandler_t (*next)(int, sighandler_t) =
			(__typeof__(next))dlsym(RTLD_NEXT, "sigset");
		return next ? next(sig, disp) : SIG_ERR;
	}
	sigset_t one, was;
	sigemptyset(&one);
	sigaddset(&one, sig);
	if (pthread_sigmask(SIG_BLOCK, NULL, &was) != 0)
		return SIG_ERR;
	sighandler_t old = set_handler(sig, disp, 0, 0);
	if (old == SIG_ERR)
		return SIG_ERR;
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	return sigismember(&was, sig) ? SIG_HOLD : old;
}
