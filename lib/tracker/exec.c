/*
 * exec.c - an exec in the recorded process: the image being left ends its
 * records with an EXEC record, and the new image's tracker is given what
 * it needs to go on in the same stream (the environment it reads at
 * start, the descriptor kept open).
 *
 * Owns: native_env (what MEMRAY_NATIVE the new image gets).
 * Calls: sink.c (batch_write, pipe_id), lifecycle.c (tracker_finish),
 * sample.c (set_active), the writer (mr_w_exec, under the lock).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

char native_env[8] = "auto";

static char *env_entry(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;
	char *s = real.malloc(n);
	if (s)
		snprintf(s, n, "%s=%s", name, value);
	return s;
}

static void free_env(char **env)
{
	if (!env)
		return;
	for (char **e = env; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0 || strncmp(*e, "MEMRAY_", 7) == 0)
			real.free(*e);
	real.free(env);
}

/* Whether envp is for a memray-record of its own (nested in a followed
 * program): it names another memray-record in MEMRAY_RECORDER. (Not
 * MEMRAY_FD: a program that kept main's envp passes on the number it was
 * started with, which may be any descriptor of its own by now.) */
static int nested_recorder(char *const envp[])
{
	char mine[32];
	if (!recorder_env(mine, sizeof(mine)))
		return 0;
	for (size_t i = 0; envp && envp[i]; i++)
		if (strncmp(envp[i], "MEMRAY_RECORDER=", 16) == 0)
			return strcmp(envp[i] + 16, mine) != 0;
	return 0;
}

char **tracker_exec_env(char *const envp[])
{
	if (getpid() != my_pid || out_fd < 0)
		return NULL;
	if (follow && nested_recorder(envp)) {
		/* A memray-record run by the followed program starts its own
		 * program: that one records it. This stream ends the image
		 * with its EXEC record, and nothing of the next (readers say
		 * it was not recorded here), and says so. */
		tracker_guard = 1;
		lock_stream();
		if (ACTIVE()) {
			mr_w_exec(&writer, now_us());
			batch_write();
			set_active(0);
		}
		unlock();
		char msg[256];
		int n = snprintf(msg, sizeof(msg), "memray-record: pid %d runs a memray-record of its own:"
				 " what it records is not in this stream\n", (int)my_pid);
		if (n > 0)
			(void)!write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
		tracker_guard = 0;
		return NULL;
	}
	if (attached || api_on) {
		/* the new image has no tracker: the recording ends here */
		tracker_finish();
		return NULL;
	}
	tracker_guard = 1;
	size_t n = 0;
	const char *user_preload = NULL;
	for (; envp && envp[n]; n++)
		if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
			user_preload = envp[n] + 11;
	char **env = real.malloc((n + 16) * sizeof(char *));
	if (!env) {
		tracker_guard = 0;
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], "LD_PRELOAD=", 11) != 0 && strncmp(envp[i], "MEMRAY_", 7) != 0)
			env[k++] = envp[i];
	const size_t base = k; /* the tracker's own entries from here */
	char buf[4096 * 2 + 2], num[32];
	/* following, the environment already names the tracker first */
	size_t self_len = strlen(self_path);
	if (user_preload && strncmp(user_preload, self_path, self_len) == 0 &&
	    (user_preload[self_len] == 0 || user_preload[self_len] == ':')) {
		user_preload += self_len;
		if (*user_preload == ':')
			user_preload++;
	}
	if (user_preload && user_preload[0]) {
		snprintf(buf, sizeof(buf), "%s:%s", self_path, user_preload);
		env[k++] = env_entry("MEMRAY_LD_PRELOAD", user_preload);
	} else {
		snprintf(buf, sizeof(buf), "%s", self_path);
	}
	env[k++] = env_entry("LD_PRELOAD", buf);
	snprintf(num, sizeof(num), "%d", out_fd);
	env[k++] = env_entry("MEMRAY_FD", num);
	snprintf(num, sizeof(num), "%d", (int)my_pid);
	env[k++] = env_entry("MEMRAY_PID", num);
	if (recorder_env(num, sizeof(num)))
		env[k++] = env_entry("MEMRAY_RECORDER", num);
	if (rescue_env(num, sizeof(num)))
		env[k++] = env_entry("MEMRAY_RESCUE", num);
	env[k++] = env_entry("MEMRAY_NATIVE", native_env);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)interval_us);
	env[k++] = env_entry("MEMRAY_INTERVAL_US", num);
	if (tracker_sampling()) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)tracker_sample_bytes);
		env[k++] = env_entry("MEMRAY_SAMPLE_BYTES", num);
		if (sample_seed) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)sample_seed);
			env[k++] = env_entry("MEMRAY_SEED", num);
		}
	}
	if (follow) {
		env[k++] = env_entry("MEMRAY_FOLLOW", "1");
		pipe_id(buf, sizeof(buf), out_dev, out_ino);
		env[k++] = env_entry("MEMRAY_FD_ID", buf);
	}
	lock_stream();
	int ok = ACTIVE(), lost = 0;
	if (ok) {
		mr_w_exec(&writer, now_us());
		/* (a descriptor the program closed is opened again here) */
		lost = batch_write() < 0 || out_fd < 0;
		set_active(0);
		if (rmp->area)
			rmp->area->ended = 1; /* this image's records are all out */
		snprintf(num, sizeof(num), "%u", (unsigned)writer.seq);
		env[k++] = env_entry("MEMRAY_SEQ", num);
	}
	unlock();
	env[k] = NULL;
	for (size_t i = 0; i < k; i++)
		if (!env[i])
			ok = 0;
	if (lost) {
		/* The EXEC record could not be written: a new image going on in
		 * the stream would follow records that are not there. It runs
		 * without the tracker, with the user's own LD_PRELOAD. */
		for (k = base; env[k]; k++)
			real.free(env[k]);
		k = base;
		if (user_preload && user_preload[0])
			env[k++] = env_entry("LD_PRELOAD", user_preload);
		env[k] = NULL;
		tracker_guard = 0;
		return env;
	}
	if (!ok || fcntl(out_fd, F_SETFD, 0) < 0) {
		free_env(env);
		tracker_guard = 0;
		return NULL; /* recording stops; the exec goes ahead unchanged */
	}
	tracker_guard = 0;
	return env;
}

void tracker_exec_failed(char **env)
{
	tracker_guard = 1;
	if (!follow && out_fd >= 0)
		fcntl(out_fd, F_SETFD, FD_CLOEXEC);
	free_env(env);
	lock_stream();
	if (out_fd >= 0)
		set_active(1); /* the stream goes on: the next record is not a header */
	if (rmp->area)
		rmp->area->ended = 0;
	unlock();
	tracker_guard = 0;
}

/* ---- a child whose environment was replaced ------------------------------
 * A followed program's child that execs with an environment of its own
 * (Python's subprocess with env=..., execle) would lose the variables
 * that load the tracker. A child made by vfork runs here on its parent's
 * memory, where nothing may be allocated: the new environment is built
 * in the caller's buffers. */

static int has_entry(char *const envp[], const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; envp && envp[i]; i++)
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
			return 1;
	return 0;
}

/* Whether envp must be given the tracker's variables: following, and a
 * program the tracker starts would not find them there. */
int tracker_spawn_env_needed(char *const envp[])
{
	return follow && out_fd >= 0 && ACTIVE() && !has_entry(envp, "MEMRAY_FD");
}

/* One entry "name=value" into text (at *used, of cap): the entry, or
 * NULL when it does not fit. */
static char *put_entry(char *text, size_t cap, size_t *used, const char *name, const char *value)
{
	size_t need = strlen(name) + strlen(value) + 2;
	if (*used + need > cap)
		return NULL;
	char *e = text + *used;
	snprintf(e, need, "%s=%s", name, value);
	*used += need;
	return e;
}

/* envp with the tracker's variables for a new process of the followed
 * tree, into vec (of cap entries; envp's count + SPAWN_EXTRA) and text:
 * vec, or NULL when it does not fit. */
char **tracker_spawn_env(char *const envp[], char **vec, size_t cap, char *text, size_t tcap)
{
	size_t k = 0, used = 0;
	const char *user_preload = NULL;
	for (size_t i = 0; envp && envp[i]; i++) {
		if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0)
			user_preload = envp[i] + 11;
		else if (strncmp(envp[i], "MEMRAY_", 7) != 0 && k + SPAWN_EXTRA < cap)
			vec[k++] = envp[i];
	}
	char num[64];
	char *e[10];
	int m = 0;
	if (user_preload && user_preload[0]) {
		size_t need = strlen(self_path) + strlen(user_preload) + 13;
		if (used + need > tcap)
			return NULL;
		e[m++] = text + used;
		snprintf(text + used, need, "LD_PRELOAD=%s:%s", self_path, user_preload);
		used += need;
		e[m++] = put_entry(text, tcap, &used, "MEMRAY_LD_PRELOAD", user_preload);
	} else {
		e[m++] = put_entry(text, tcap, &used, "LD_PRELOAD", self_path);
	}
	snprintf(num, sizeof(num), "%d", out_fd);
	e[m++] = put_entry(text, tcap, &used, "MEMRAY_FD", num);
	pipe_id(num, sizeof(num), out_dev, out_ino);
	e[m++] = put_entry(text, tcap, &used, "MEMRAY_FD_ID", num);
	e[m++] = put_entry(text, tcap, &used, "MEMRAY_FOLLOW", "1");
	e[m++] = put_entry(text, tcap, &used, "MEMRAY_NATIVE", native_env);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)interval_us);
	e[m++] = put_entry(text, tcap, &used, "MEMRAY_INTERVAL_US", num);
	if (recorder_env(num, sizeof(num)))
		e[m++] = put_entry(text, tcap, &used, "MEMRAY_RECORDER", num);
	if (tracker_sampling()) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)tracker_sample_bytes);
		e[m++] = put_entry(text, tcap, &used, "MEMRAY_SAMPLE_BYTES", num);
		if (sample_seed) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)sample_seed);
			e[m++] = put_entry(text, tcap, &used, "MEMRAY_SEED", num);
		}
	}
	for (int i = 0; i < m; i++) {
		if (!e[i])
			return NULL;
		vec[k++] = e[i];
	}
	vec[k] = NULL;
	return vec;
}

