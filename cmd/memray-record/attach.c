/*
 * attach.c - memray-record --pid: record a program that is already
 * running.
 *
 * gdb attaches to the process, waits for a thread to enter malloc, free,
 * calloc or realloc (a point where that thread holds no allocator lock
 * and, checked on its callers, is not inside the dynamic loader), and
 * there has it dlopen the tracker and call memray_attach(DIR). The
 * tracker opens two FIFOs this process made in DIR, a private directory:
 * `data`, which carries the stream, and `ctl`, whose hang-up (this
 * process closing it, or dying) makes the tracker restore the GOT
 * entries it patched, write its trailer and close `data`. gdb detaches
 * as soon as the call returns, so the program runs at full speed while it
 * is recorded and nothing of gdb stays in it.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <gelf.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/util.h"
#include "record.h"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The first line of /proc/PID/<file> starting with key, after the key. */
static int proc_field(long pid, const char *file, const char *key, char *out, size_t n)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t klen = strlen(key);
	int found = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0) {
			char *v = line + klen;
			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = 0;
			snprintf(out, n, "%s", v);
			found = 0;
			break;
		}
	fclose(f);
	return found;
}

/* Whether a SIGSTOP sent to process pid waits to be taken: kill(2)
 * returns before the process stops, so a `kill -STOP` just before shows
 * only there. */
static int stop_pending(long pid)
{
	static const char *const keys[] = { "ShdPnd:", "SigPnd:" };
	char v[128];
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (proc_field(pid, "status", keys[i], v, sizeof(v)) == 0 &&
		    (strtoull(v, NULL, 16) >> (SIGSTOP - 1) & 1))
			return 1;
	return 0;
}

/* Why the program in exe cannot take the tracker, or NULL. */
static const char *not_loadable(const char *exe)
{
	int kind = elf_linkage(exe);
	return kind == ELF_32BIT ? "is a 32-bit program" :
	       kind == ELF_STATIC ? "is not dynamically linked" : NULL;
}

/* Tries PTRACE_SEIZE from a child (which does not stop the target, and
 * lets go of it when the child exits): 0, or the errno. */
static int ptrace_probe(long pid)
{
	pid_t c = fork();
	if (c < 0)
		return errno;
	if (c == 0) {
		int e = ptrace(PTRACE_SEIZE, (pid_t)pid, NULL, NULL) == 0 ? 0 : errno;
		_exit(e);
	}
	int ws;
	while (waitpid(c, &ws, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : EIO;
}

static int find_in_path(const char *name, char *out, size_t n)
{
	const char *path = getenv("PATH");
	if (!path || !path[0])
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t len = end ? (size_t)(end - path) : strlen(path);
		snprintf(out, n, "%.*s/%s", (int)len, path, name);
		if (len && access(out, X_OK) == 0)
			return 0;
		path += len + (end ? 1 : 0);
	}
	return -1;
}

/* Whether the target sees the same files as this process. */
static int same_mounts(long pid)
{
	char a[64], b[64], p[64];
	snprintf(p, sizeof(p), "/proc/%ld/ns/mnt", pid);
	ssize_t x = readlink("/proc/self/ns/mnt", a, sizeof(a) - 1);
	ssize_t y = readlink(p, b, sizeof(b) - 1);
	if (x <= 0 || y <= 0)
		return 1;
	return x == y && memcmp(a, b, (size_t)x) == 0;
}

/* A path as the target sees it: through /proc/OURPID/root when it lives
 * in other mounts (a container, a private /tmp). */
static void target_path(long pid, const char *path, char *out, size_t n)
{
	if (same_mounts(pid))
		snprintf(out, n, "%s", path);
	else
		snprintf(out, n, "/proc/%d/root%s", (int)getpid(), path);
}

/* ---- where to wait: the entries of the program's allocator ------------------
 * Every definition of malloc, free, calloc and realloc in the objects the
 * process has mapped, read from their files (.dynsym), except the
 * tracker's own: once loaded by an earlier attach, its hooks would be
 * what gdb finds by name, and they are no longer called. */

#define MAX_ENTRIES 64

static size_t entries_in(const char *file, uintptr_t start, uintptr_t *out, size_t n, size_t max)
{
	static const char *const names[] = { "malloc", "free", "calloc", "realloc" };
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return n;
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	GElf_Ehdr eh;
	uintptr_t bias = start;
	int have_bias = 0;
	size_t np = 0;
	if (e && gelf_getehdr(e, &eh) && elf_getphdrnum(e, &np) == 0) {
		for (size_t i = 0; i < np; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && ph.p_offset == 0) {
				bias = start - (uintptr_t)ph.p_vaddr;
				have_bias = 1;
				break;
			}
		}
	}
	Elf_Scn *scn = NULL;
	while (e && have_bias && (scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t count = sh.sh_size / sh.sh_entsize;
		for (size_t i = 0; d && i < count && n < max; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF || !sym.st_value ||
			    GELF_ST_TYPE(sym.st_info) != STT_FUNC)
				continue;
			const char *name = elf_strptr(e, sh.sh_link, sym.st_name);
			for (int k = 0; name && k < 4; k++)
				if (strcmp(name, names[k]) == 0) {
					uintptr_t a = bias + (uintptr_t)sym.st_value;
					int dup = 0;
					for (size_t j = 0; j < n; j++)
						dup |= out[j] == a;
					if (!dup)
						out[n++] = a;
				}
		}
	}
	if (e)
		elf_end(e);
	close(fd);
	return n;
}

static size_t allocator_entries(long pid, const char *tracker, uintptr_t *out, size_t max)
{
	char path[64], line[PATH_MAX + 128], file[PATH_MAX + 64];
	struct stat ts;
	int have_tracker = stat(tracker, &ts) == 0;
	snprintf(path, sizeof(path), "/proc/%ld/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	elf_version(EV_CURRENT);
	size_t n = 0;
	while (fgets(line, sizeof(line), f) && n < max) {
		unsigned long start, end, off;
		int at = 0;
		if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %n", &start, &end, &off, &at) != 3 || !at)
			continue;
		char *name = line + at;
		name[strcspn(name, "\n")] = 0;
		if (off != 0 || name[0] != '/' || strstr(name, " (deleted)"))
			continue;
		snprintf(file, sizeof(file), "/proc/%ld/root%s", pid, name);
		struct stat st;
		if (stat(file, &st) < 0 || !S_ISREG(st.st_mode) ||
		    (have_tracker && st.st_dev == ts.st_dev && st.st_ino == ts.st_ino))
			continue;
		n = entries_in(file, (uintptr_t)start, out, n, max);
	}
	fclose(f);
	return n;
}

/* A string for gdb's command language: quotes and backslashes escaped. */
static void gdb_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

struct session {
	char dir[64];
	char data_path[96], ctl_path[96], script[96], pyscript[96];
};

static struct session S;

static void cleanup(void)
{
	if (!S.dir[0])
		return;
	unlink(S.data_path);
	unlink(S.ctl_path);
	unlink(S.script);
	unlink(S.pyscript);
	rmdir(S.dir);
	S.dir[0] = 0;
}

/* $memray_in_loader(): whether a caller of the stopped thread is the
 * dynamic loader or dlopen (by name, or by being in ld.so's code). In a
 * file of its own: a gdb without Python fails only this file, and the
 * condition then stops at the first hit. */
static const char loader_check[] =
	"import re\n"
	"import gdb\n"
	"class MemrayInLoader(gdb.Function):\n"
	"    pattern = re.compile(r'^(dl_|dlopen|dlmopen|dlclose|dlerror_run|libc_dlopen|rtld_)')\n"
	"    def __init__(self):\n"
	"        super().__init__('memray_in_loader')\n"
	"    def invoke(self):\n"
	"        try:\n"
	"            f = gdb.newest_frame()\n"
	"            for _ in range(64):\n"
	"                if f is None:\n"
	"                    break\n"
	"                name = (f.name() or '').lstrip('_')\n"
	"                if name.startswith('GI_'):\n"
	"                    name = name[3:].lstrip('_')\n"
	"                lib = gdb.solib_name(f.pc()) or ''\n"
	"                if self.pattern.match(name) or '/ld-linux' in lib or '/ld-musl' in lib:\n"
	"                    return 1\n"
	"                f = f.older()\n"
	"        except gdb.error:\n"
	"            return 1\n"
	"        return 0\n"
	"MemrayInLoader()\n";

static void write_script(long pid, const char *lib, const char *dir, int native, long interval_us,
			 const struct attach_opts *a, const uintptr_t *entries, size_t nentries)
{
	FILE *f = fopen(S.pyscript, "wxe");
	if (!f || fputs(loader_check, f) < 0 || fclose(f) != 0)
		die(EXIT_USAGE, "cannot create '%s': %s", S.pyscript, strerror(errno));
	f = fopen(S.script, "wxe");
	if (!f)
		die(EXIT_USAGE, "cannot create '%s': %s", S.script, strerror(errno));
	fprintf(f,
		"set confirm off\n"
		"set pagination off\n"
		"set unwindonsignal on\n"
		"set print thread-events off\n"
		"handle all nostop noprint pass\n"
		"attach %ld\n"
		"printf \"MEMRAY-ATTACHED\\n\"\n", pid);
	/* entries of the allocator: the thread there holds none of its locks;
	 * not while a caller is the dynamic loader (a dlopen in progress) */
	static const char *const fns[] = { "malloc", "free", "calloc", "realloc" };
	size_t nb = nentries ? nentries : 4;
	for (size_t i = 0; i < nb; i++) {
		if (nentries)
			fprintf(f, "break *0x%lx", (unsigned long)entries[i]);
		else
			fprintf(f, "break *%s", fns[i]);
		fputs(" if !$memray_in_loader()\n", f);
	}
	/* The two strings are written into a mapping of their own, made and
	 * unmade by the system call itself: a string literal passed to a
	 * call, gdb puts in the process with its malloc and never frees (78
	 * bytes left in the program, and in its recording when the attach
	 * is refused because one is running already). */
	if (strlen(lib) >= 4096 || strlen(dir) >= 4096)
		die(EXIT_USAGE, "the tracker's path or the session's directory is too long");
	fprintf(f, "commands 1-%zu\n", nb);
	fprintf(f,
		"  silent\n"
		"  disable breakpoints\n"
		"  printf \"MEMRAY-HIT\\n\"\n"
		"  set $memray_m = (char *) ((long (*)(long, ...)) syscall)(%dL, 0L, 8192L, 3L, 0x22L, -1L, 0L)\n"
		"  if (long) $memray_m == -1\n"
		"    printf \"MEMRAY-DLOPEN-FAILED no memory could be mapped in the process\\n\"\n"
		"  else\n"
		"    set {char [%zu]} $memray_m = ", (int)SYS_mmap, strlen(lib) + 1);
	gdb_string(f, lib);
	fprintf(f, "\n    set {char [%zu]} ($memray_m + 4096) = ", strlen(dir) + 1);
	gdb_string(f, dir);
	fprintf(f, "\n"
		   "    set $memray_h = (void *) dlopen($memray_m, 2)\n"
		   "    if $memray_h == 0\n"
		   "      printf \"MEMRAY-DLOPEN-FAILED %%s\\n\", (char *) dlerror()\n"
		   "    else\n"
		   "      printf \"MEMRAY-RESULT %%d\\n\", ((int (*)(const char *, int, long, "
		   "unsigned long long, unsigned long long)) memray_attach)($memray_m + 4096, "
		   "%d, %ldL, %lluULL, %lluULL)\n"
		   "    end\n"
		   "    set $memray_u = ((long (*)(long, ...)) syscall)(%dL, $memray_m, 8192L)\n"
		   "  end\n"
		   "end\n"
		   "continue\n", native, interval_us, a->sample_bytes, a->seed, (int)SYS_munmap);
	fclose(f);
}

/* What gdb said, kept for messages. */
struct gdb_out {
	char text[16384];
	size_t len;
};

static void gdb_take(struct gdb_out *g, const char *p, size_t n)
{
	if (g->len + n >= sizeof(g->text)) {
		size_t drop = g->len + n - sizeof(g->text) + 1;
		if (drop > g->len)
			drop = g->len;
		memmove(g->text, g->text + drop, g->len - drop);
		g->len -= drop;
		if (n >= sizeof(g->text)) {
			p += n - (sizeof(g->text) - 1);
			n = sizeof(g->text) - 1;
		}
	}
	memcpy(g->text + g->len, p, n);
	g->len += n;
	g->text[g->len] = 0;
}

/* The last line of gdb's output that looks like an error, for messages. */
static const char *gdb_error(struct gdb_out *g)
{
	static char line[512];
	line[0] = 0;
	char *s = g->text;
	while (s && *s) {
		char *nl = strchr(s, '\n');
		size_t n = nl ? (size_t)(nl - s) : strlen(s);
		if (n && (memmem(s, n, "rror", 4) || memmem(s, n, "ptrace", 6) ||
			  memmem(s, n, "No symbol", 9) || memmem(s, n, "annot", 5)))
			snprintf(line, sizeof(line), "%.*s", (int)n, s);
		s = nl ? nl + 1 : NULL;
	}
	return line[0] ? line : "gdb gave no reason";
}

/* Dies unless process pid can be attached to: it runs (not a zombie, not
 * stopped), no one traces it, ptrace is permitted, and its program is a
 * dynamically linked 64-bit one. Its name goes to comm. */
static void check_target(long pid, char *comm, size_t ncomm)
{
	char exe[PATH_MAX], path[64], v[128];
	if (pid <= 0 || pid == (long)getpid() || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
		die(EXIT_USAGE, "no process with pid %ld", pid);
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	FILE *cf = fopen(path, "re");
	if (cf) {
		if (fgets(comm, (int)ncomm, cf))
			comm[strcspn(comm, "\n")] = 0;
		fclose(cf);
	}
	if (proc_field(pid, "status", "State:", v, sizeof(v)) == 0 && v[0] == 'Z')
		die(EXIT_USAGE, "process %ld (%s) has exited (it is a zombie)", pid, comm);
	if ((proc_field(pid, "status", "State:", v, sizeof(v)) == 0 && (v[0] == 'T' || v[0] == 't')) ||
	    stop_pending(pid))
		die(EXIT_USAGE, "process %ld (%s) is stopped; attaching would let it run: continue "
		    "it first (kill -CONT %ld)", pid, comm, pid);
	if (proc_field(pid, "status", "TracerPid:", v, sizeof(v)) == 0 && atol(v) != 0)
		die(EXIT_USAGE, "process %ld (%s) is already traced by process %s (a debugger "
		    "or strace); detach it first", pid, comm, v);
	int e = ptrace_probe(pid);
	if (e == EPERM || e == EACCES) {
		char scope[16] = "";
		FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
		if (f) {
			if (fgets(scope, sizeof(scope), f))
				scope[strcspn(scope, "\n")] = 0;
			fclose(f);
		}
		die(EXIT_USAGE, "not permitted to attach to process %ld (%s): ptrace: %s; "
		    "kernel.yama.ptrace_scope is %s (1 allows only a parent to trace its "
		    "children: run as root, give memray-record CAP_SYS_PTRACE, or "
		    "'sysctl kernel.yama.ptrace_scope=0'; a container needs CAP_SYS_PTRACE)",
		    pid, comm, strerror(e), scope[0] ? scope : "not set (no Yama)");
	}
	if (e == ESRCH)
		die(EXIT_USAGE, "no process with pid %ld", pid);
	snprintf(path, sizeof(path), "/proc/%ld/exe", pid);
	ssize_t k = readlink(path, exe, sizeof(exe) - 1);
	if (k <= 0) {
		if (errno == EACCES || errno == EPERM)
			die(EXIT_USAGE, "not permitted to attach to process %ld (%s): it belongs to "
			    "another user; run memray-record as that user or as root", pid, comm);
		die(EXIT_USAGE, "process %ld (%s) has no program file (a kernel thread?)", pid, comm);
	}
	exe[k] = 0;
	const char *why = not_loadable(path);
	if (why)
		die(EXIT_USAGE, "process %ld (%s) %s: the tracker can only be loaded into a "
		    "dynamically linked 64-bit program", pid, exe, why);
}

/* Makes the private directory (S) and its FIFOs, owned by the target's
 * user so that it can open them. */
static void make_fifos(long pid)
{
	char v[128];
	snprintf(S.dir, sizeof(S.dir), "/tmp/memray-attach-XXXXXX");
	if (!mkdtemp(S.dir))
		die(EXIT_USAGE, "cannot create a directory in /tmp: %s", strerror(errno));
	atexit(cleanup);
	snprintf(S.data_path, sizeof(S.data_path), "%s/data", S.dir);
	snprintf(S.ctl_path, sizeof(S.ctl_path), "%s/ctl", S.dir);
	snprintf(S.script, sizeof(S.script), "%s/inject.gdb", S.dir);
	snprintf(S.pyscript, sizeof(S.pyscript), "%s/loader.py", S.dir);
	if (mkfifo(S.data_path, 0600) < 0 || mkfifo(S.ctl_path, 0600) < 0)
		die(EXIT_USAGE, "cannot create a FIFO in %s: %s", S.dir, strerror(errno));
	if (proc_field(pid, "status", "Uid:", v, sizeof(v)) == 0) {
		uid_t uid = (uid_t)strtoul(v, NULL, 10);
		gid_t gid = getegid();
		if (proc_field(pid, "status", "Gid:", v, sizeof(v)) == 0)
			gid = (gid_t)strtoul(v, NULL, 10);
		/* the directory stays ours (gdb runs the scripts in it): the
		 * target's user may only pass through it to the two FIFOs */
		if (uid != geteuid() && (chmod(S.dir, 0711) < 0 || chown(S.data_path, uid, gid) < 0 ||
					 chown(S.ctl_path, uid, gid) < 0))
			die(EXIT_USAGE, "cannot give the FIFOs in %s to the user of process %ld: %s",
			    S.dir, pid, strerror(errno));
	}
}

/* Blocks SIGINT, SIGTERM and SIGHUP, which on_stop records when the loop
 * waits (with the mask *old); SIGPIPE is ignored. */
static void block_stops(sigset_t *old)
{
	sigset_t stops;
	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGHUP);
	sigprocmask(SIG_BLOCK, &stops, old);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	/* SIGINT and SIGTERM stop the recording even where memray-record was
	 * started with them ignored (a job a script put in the background
	 * ignores SIGINT: its kill -INT is how the script says stop); a
	 * SIGHUP ignored stays ignored (nohup) */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct sigaction given;
	if (sigaction(SIGHUP, NULL, &given) != 0 || given.sa_handler != SIG_IGN)
		sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* One attach in progress: gdb, the FIFOs, and how far it has come. */
struct run {
	const struct attach_opts *a;
	struct out *out;
	long pid;
	const char *comm;
	pid_t gdb;           /* gdb's pid */
	int gdb_fd;          /* gdb's output, read while gdb_open */
	int gdb_open, gdb_done, gdb_status;
	int data, ctl;       /* the FIFOs; ctl is -1 once closed */
	int result;          /* what memray_attach returned; -100: not yet */
	int data_seen, stopping, interrupted, hit, told_wait, abandon;
	double start, attached_at, stop_at;
	sigset_t old;        /* the signal mask to wait with */
	struct gdb_out go;
	struct watch watch;
};

static char buf[1 << 16];

/* Starts gdb on the scripts, its output and errors into r->gdb_fd. */
static void start_gdb(struct run *r, const char *gdb)
{
	int gp[2];
	if (pipe2(gp, O_CLOEXEC) < 0)
		die(EXIT_USAGE, "cannot create a pipe: %s", strerror(errno));
	pid_t g = fork();
	if (g < 0)
		die(EXIT_USAGE, "cannot fork: %s", strerror(errno));
	if (g == 0) {
		/* its own process group: a Ctrl-C at the terminal is ours to
		 * handle, not gdb's */
		setpgid(0, 0);
		sigprocmask(SIG_SETMASK, &r->old, NULL);
		signal(SIGINT, SIG_DFL);
		int null = open("/dev/null", O_RDONLY);
		dup2(null, STDIN_FILENO);
		dup2(gp[1], STDOUT_FILENO);
		dup2(gp[1], STDERR_FILENO);
		execl(gdb, "gdb", "-batch", "-nx", "-iex", "set debuginfod enabled off", "-x",
		      S.pyscript, "-x", S.script, (char *)NULL);
		_exit(127);
	}
	close(gp[1]);
	r->gdb = g;
	r->gdb_fd = gp[0];
}

/* Acts on a stop asked for (a signal, the end of --duration, the output
 * gone) and on waits that went on too long; 1 when the loop must end. */
static int check_stop(struct run *r, double now)
{
	const struct attach_opts *a = r->a;
	/* the duration runs from the moment recording starts; waiting for
	 * the program to call the allocator may take as long again */
	if (!r->stopping && a->duration > 0 &&
	    ((r->result == 0 && now - r->attached_at >= a->duration) ||
	     (r->result != 0 && now - r->start >= a->duration + 10)))
		stop_signal = -1;
	if (stop_signal && !r->stopping) {
		r->stopping = 1;
		r->interrupted = stop_signal > 0;
		r->stop_at = now;
		stop_signal = 0;
		if (r->result == 0) {
			close(r->ctl); /* the tracker ends the recording */
			r->ctl = -1;
		} else if (!r->gdb_done && r->gdb_open) {
			/* what gdb said so far first: it may have hit */
			struct pollfd q = { r->gdb_fd, POLLIN, 0 };
			ssize_t n;
			while (poll(&q, 1, 0) == 1 && (q.revents & POLLIN) &&
			       (n = read(r->gdb_fd, buf, sizeof(buf))) > 0)
				gdb_take(&r->go, buf, (size_t)n);
			if (strstr(r->go.text, "MEMRAY-HIT"))
				r->hit = 1;
			if (!r->hit)
				kill(r->gdb, SIGINT); /* gdb stops waiting and detaches */
		}
		/* once gdb's call into the process has begun it is never
		 * interrupted (the process would be left in the middle
		 * of it): the recording ends as soon as it returns */
	} else if (stop_signal && r->stopping) {
		/* a second signal: leave now; the program ends the
		 * recording itself when it next runs, and gdb finishes
		 * its call on its own */
		warnmsg("stopped waiting; process %ld ends the recording itself", r->pid);
		r->abandon = 1;
		return 1;
	}
	if (r->hit && r->result == -100 && !r->told_wait && now - r->start > 10 && !a->quiet) {
		warnmsg("waiting for the call into process %ld to return...", r->pid);
		r->told_wait = 1;
	}
	if (r->stopping && r->result == 0 && now - r->stop_at > 10) {
		warnmsg("process %ld does not answer; stopped waiting", r->pid);
		return 1;
	}
	return 0;
}

/* Reads what gdb said: the hit, memray_attach's result; 1 when gdb has
 * ended without attaching (the loop ends, the failure is reported). */
static int read_gdb(struct run *r)
{
	ssize_t n = read(r->gdb_fd, buf, sizeof(buf));
	if (n > 0) {
		if (getenv("MEMRAY_ATTACH_DEBUG"))
			fwrite(buf, 1, (size_t)n, stderr);
		gdb_take(&r->go, buf, (size_t)n);
		if (strstr(r->go.text, "MEMRAY-HIT"))
			r->hit = 1;
		const char *m = strstr(r->go.text, "MEMRAY-RESULT ");
		if (m && r->result == -100 && strchr(m, '\n')) {
			r->result = atoi(m + 14);
			/* the process has the FIFOs open, or never will:
			 * nothing is left behind in /tmp from here on */
			cleanup();
			if (r->result == 0 && r->stopping && r->ctl >= 0) {
				close(r->ctl); /* stopped while the call ran */
				r->ctl = -1;
			}
			if (r->result == 0) {
				r->attached_at = now_s();
				if (!r->a->quiet)
					warnmsg("recording process %ld (%s)%s", r->pid, r->comm,
						r->a->duration > 0 ? "" : "; Ctrl-C stops");
			}
		}
	} else if (n == 0 || errno != EINTR) {
		r->gdb_open = 0;
		close(r->gdb_fd);
		while (waitpid(r->gdb, &r->gdb_status, 0) < 0 && errno == EINTR)
			;
		r->gdb_done = 1;
		if (r->result != 0)
			return 1; /* attaching failed, reported below */
	}
	return 0;
}

/* Passes what the tracker wrote on to the output; 1 when the tracker has
 * closed the stream. */
static int read_data(struct run *r)
{
	ssize_t n = read(r->data, buf, sizeof(buf));
	if (n > 0) {
		r->data_seen = 1;
		r->out->bytes_in += (unsigned long long)n;
		watch_bytes(&r->watch, (const uint8_t *)buf, (size_t)n);
		out_stream(r->out, buf, (size_t)n);
		/* the output went away (| head, a reader that quit):
		 * the recording ends */
		if (r->out->cut && !r->stopping)
			stop_signal = -1;
	} else if (n == 0 && r->data_seen) {
		return 1; /* the tracker closed the stream */
	} else if (n == 0) {
		/* no writer yet: wait for gdb */
		struct timespec t = { 0, 20 * 1000 * 1000 };
		nanosleep(&t, NULL);
	}
	return 0;
}

/* Follows gdb and the stream until the recording ends (or attaching
 * failed). */
static void run_loop(struct run *r)
{
	for (;;) {
		if (check_stop(r, now_s()))
			break;
		struct pollfd p[2];
		int np = 0;
		if (r->gdb_open)
			p[np++] = (struct pollfd){ r->gdb_fd, POLLIN, 0 };
		/* the tracker writes its header while gdb's call runs */
		int di = -1;
		if (r->result == 0 || r->data_seen || !r->gdb_done) {
			di = np;
			p[np++] = (struct pollfd){ r->data, POLLIN, 0 };
		}
		struct timespec tick = { 0, 100 * 1000 * 1000 };
		int n = ppoll(p, (nfds_t)np, &tick, &r->old);
		if (n < 0 && errno != EINTR)
			die(EXIT_USAGE, "poll: %s", strerror(errno));
		if (n <= 0) {
			if (!r->gdb_done && !r->gdb_open && waitpid(r->gdb, &r->gdb_status, WNOHANG) == r->gdb)
				r->gdb_done = 1;
			continue;
		}
		if (r->gdb_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) && read_gdb(r))
			break;
		if (di >= 0 && (p[di].revents & (POLLIN | POLLHUP | POLLERR)) && read_data(r))
			break;
	}
}

/* Lets gdb finish (unless abandoned) and closes the FIFOs and the output. */
static void finish(struct run *r)
{
	if (r->abandon) {
		/* gdb is left to finish on its own */
	} else if (!r->gdb_done && r->gdb_open) {
		/* gdb's output is no longer read: let it finish detaching */
		close(r->gdb_fd);
		while (waitpid(r->gdb, &r->gdb_status, 0) < 0 && errno == EINTR)
			;
	} else if (!r->gdb_done) {
		while (waitpid(r->gdb, &r->gdb_status, 0) < 0 && errno == EINTR)
			;
	}
	if (r->ctl >= 0)
		close(r->ctl);
	close(r->data);
	cleanup();
	out_finish(r->out);
}

/* Says why attaching failed, from memray_attach's result or what gdb
 * said, and exits; dir is the FIFOs' directory as the process sees it. */
__attribute__((noreturn)) static void attach_failed(struct run *r, const char *dir)
{
	long pid = r->pid;
	const char *comm = r->comm;
	if (r->out->created)
		unlink(r->out->name);
	if (r->result == -1)
		die(EXIT_USAGE, "process %ld (%s) is being recorded already", pid, comm);
	if (r->result == -2)
		die(EXIT_USAGE, "process %ld (%s) cannot open memray-record's FIFOs in %s",
		    pid, comm, dir);
	if (r->result == -3)
		die(EXIT_USAGE, "cannot redirect the allocator calls of process %ld (%s)",
		    pid, comm);
	const char *m = strstr(r->go.text, "MEMRAY-DLOPEN-FAILED ");
	if (m) {
		char reason[512];
		snprintf(reason, sizeof(reason), "%s", m + 21);
		reason[strcspn(reason, "\n")] = 0;
		die(EXIT_USAGE, "cannot load the tracker into process %ld (%s): %s", pid, comm,
		    reason);
	}
	if (r->stopping && strstr(r->go.text, "MEMRAY-ATTACHED"))
		die(EXIT_CHECK, "process %ld (%s) did not call the allocator while memray-record "
		    "waited; nothing was recorded, and the process goes on as before", pid, comm);
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		die(EXIT_USAGE, "process %ld (%s) ended before it could be attached to", pid, comm);
	die(EXIT_USAGE, "gdb could not attach to process %ld (%s): %s", pid, comm,
	    gdb_error(&r->go));
}

/* Says how the recording ended; the exit status. */
static int report_end(struct run *r)
{
	const struct attach_opts *a = r->a;
	struct out *out = r->out;
	long pid = r->pid;
	int trailer = watch_trailer(&r->watch);
	if (out->err) {
		if (out->err == EPIPE)
			warnmsg("the stream was cut: %s went away; process %ld goes on as before",
				out->name, pid);
		else
			warnmsg("the stream in %s is incomplete: %s", out->name, strerror(out->err));
		return EXIT_CHECK;
	}
	if (!trailer) {
		warnmsg("process %ld (%s) ended during the recording without finishing its "
			"stream (killed?); %s holds what was written before", pid, r->comm, out->name);
	} else if (!r->stopping && !a->quiet) {
		warnmsg("process %ld (%s) ended during the recording", pid, r->comm);
	} else if (!a->quiet && r->interrupted) {
		warnmsg("stopped recording; process %ld goes on as before", pid);
	}
	if (!a->quiet && !out->to_stdout) {
		char h[16];
		warnmsg("wrote %s (%s)", out->name, human_size(h, out->bytes_out));
	}
	return EXIT_OK;
}

int attach_main(const struct attach_opts *a, struct out *out)
{
	static struct run run;
	struct run *r = &run;
	long pid = a->pid;
	char comm[64] = "?";
	check_target(pid, comm, sizeof(comm));

	char gdb[PATH_MAX], tracker[PATH_MAX], lib[PATH_MAX + 64], dir[PATH_MAX + 64];
	if (find_in_path("gdb", gdb, sizeof(gdb)) < 0)
		die(EXIT_USAGE, "attaching needs gdb, which is not in PATH (Debian: apt-get "
		    "install gdb)");
	if (find_tracker(tracker, sizeof(tracker)) < 0)
		die(EXIT_USAGE, "cannot find libmemray-tracker.so (set MEMRAY_TRACKER or "
		    "install memray-c with make install)");
	make_fifos(pid);
	/* the output, last: every mistake above leaves no file behind */
	if (!out->to_stdout) {
		out->fd = open_output(out->name, a->force);
		out->created = 1;
	}
	out_start(out);
	r->data = open(S.data_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	r->ctl = open(S.ctl_path, O_RDWR | O_CLOEXEC);
	if (r->data < 0 || r->ctl < 0)
		die(EXIT_USAGE, "cannot open the FIFOs in %s: %s", S.dir, strerror(errno));
	fcntl(r->data, F_SETPIPE_SZ, 1 << 20);
	target_path(pid, tracker, lib, sizeof(lib));
	target_path(pid, S.dir, dir, sizeof(dir));
	int native = strcmp(a->native, "1") == 0 ? 1 : strcmp(a->native, "0") == 0 ? 0 : -1;
	uintptr_t entries[MAX_ENTRIES];
	size_t nentries = allocator_entries(pid, tracker, entries, MAX_ENTRIES);
	write_script(pid, lib, dir, native, a->interval_ms * 1000, a, entries, nentries);

	block_stops(&r->old);
	start_gdb(r, gdb);
	r->a = a;
	r->out = out;
	r->pid = pid;
	r->comm = comm;
	r->gdb_open = 1;
	r->result = -100;
	r->start = now_s();
	r->watch.pid = (uint32_t)pid;
	if (!a->quiet)
		warnmsg("attaching to process %ld (%s)...", pid, comm);
	run_loop(r);
	finish(r);
	if (r->result != 0)
		attach_failed(r, dir);
	return report_end(r);
}
