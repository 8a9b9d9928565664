#include <inttypes.h>
#include <string.h>

#include "dump.h"
#include "util.h"

static void put_flags(FILE *f, uint64_t flags)
{
	static const char *const names[] = { "native", "python", "pymalloc",
					     "python-allocators", "follow-fork", "attached", "sampled" };
	/* 0x80 (python-info) shows as the python= fields */
	int any = 0;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flags & (1u << i)) {
			fprintf(f, "%s%s", any ? "," : "", names[i]);
			any = 1;
		}
	if (!any)
		fputs("none", f);
}

static void put_str(FILE *f, const char *s)
{
	put_quoted(f, s, strlen(s));
}

static void dump_header(FILE *f, const struct mr_header *h)
{
	fprintf(f, " version=%" PRIu64 " tool=", h->version);
	put_str(f, h->tool_version);
	fprintf(f, " pid=%u ppid=%u start_us=%" PRIu64 " page_size=%" PRIu64 " flags=",
		h->pid, h->ppid, h->start_us, h->page_size);
	put_flags(f, h->flags);
	fprintf(f, " interval_us=%" PRIu64, h->interval_us);
	if (h->flags & MR_F_SAMPLED)
		fprintf(f, " sample_bytes=%" PRIu64, h->sample_bytes);
	if (h->flags & MR_F_PYINFO) {
		fputs(" python=", f);
		put_str(f, h->python_version);
		fputs(" python_problem=", f);
		put_str(f, h->python_problem);
	}
	fputs(" exe=", f);
	put_str(f, h->exe);
	fprintf(f, " argc=%u argv=", h->argc);
	for (uint32_t i = 0; i < h->argc; i++) {
		if (i)
			fputc(' ', f);
		put_str(f, h->argv[i]);
	}
}

static void dump_module(FILE *f, const struct mr_proc *p, uint32_t id)
{
	const struct mr_module *m = &p->modules[id];
	fprintf(f, " id=%u path=%u ", id, m->path);
	put_str(f, mr_string(p, m->path));
	fprintf(f, " base=0x%" PRIx64 " build_id=", m->base);
	if (!m->build_id_len)
		fputc('-', f);
	for (uint32_t i = 0; i < m->build_id_len; i++)
		fprintf(f, "%02x", m->build_id[i]);
	fputs(" segments=", f);
	for (uint32_t i = 0; i < m->nsegs; i++)
		fprintf(f, "%s0x%" PRIx64 "+0x%" PRIx64 ":%c%c%c", i ? "," : "",
			m->segs[i].vaddr, m->segs[i].size,
			m->segs[i].prot & 4 ? 'r' : '-', m->segs[i].prot & 2 ? 'w' : '-',
			m->segs[i].prot & 1 ? 'x' : '-');
}

void mr_dump_record(FILE *f, const struct mr_record *rec)
{
	const struct mr_proc *p = rec->proc;
	const char *a = mr_allocator_name(rec->allocator);
	if (rec->tag == MR_TAG_NODE_PYTHON && rec->frame) {
		/* version 3 defined the node's frame with it: a line each */
		const struct mr_pyframe *fr = &p->frames[rec->frame];
		fprintf(f, "%" PRIu64 " %u pyframe id=%u function=%u file=%u line=%u\n",
			mr_record_offset(rec), p->pid, rec->frame, fr->function, fr->file,
			fr->line);
	}
	fprintf(f, "%" PRIu64 " %u %s", mr_record_offset(rec), p->pid, mr_tag_name(rec->tag));
	switch (rec->tag & 0xe0) {
	case MR_TAG_ALLOC:
		fprintf(f, " %s addr=0x%" PRIx64 " size=%" PRIu64 " stack=%u thread=%u\n", a,
			rec->addr, rec->size, rec->stack, rec->thread);
		return;
	case MR_TAG_FREE:
		fprintf(f, " %s addr=0x%" PRIx64, a, rec->addr);
		if (rec->allocator == MR_MUNMAP)
			fprintf(f, " size=%" PRIu64, rec->size);
		fprintf(f, " thread=%u\n", rec->thread);
		return;
	case MR_TAG_MOVE:
		fprintf(f, " %s old=0x%" PRIx64, a, rec->old_addr);
		if (rec->allocator == MR_MREMAP)
			fprintf(f, " old_size=%" PRIu64, rec->old_size);
		fprintf(f, " addr=0x%" PRIx64 " size=%" PRIu64 " stack=%u thread=%u\n",
			rec->addr, rec->size, rec->stack, rec->thread);
		return;
	}
	switch (rec->tag) {
	case MR_TAG_HEADER:
		dump_header(f, &p->header);
		break;
	case MR_TAG_STRING:
		fprintf(f, " id=%u ", rec->id);
		put_str(f, mr_string(p, rec->id));
		break;
	case MR_TAG_PYFRAME: {
		const struct mr_pyframe *fr = &p->frames[rec->id];
		fprintf(f, " id=%u function=%u file=%u line=%u", rec->id, fr->function,
			fr->file, fr->line);
		break;
	}
	case MR_TAG_NODE_NATIVE:
		fprintf(f, " id=%u parent=%u ip=0x%" PRIx64, rec->id,
			p->nodes[rec->id].parent, p->nodes[rec->id].value);
		break;
	case MR_TAG_NODE_PYTHON:
		fprintf(f, " id=%u parent=%u frame=%" PRIu64, rec->id,
			p->nodes[rec->id].parent, p->nodes[rec->id].value);
		break;
	case MR_TAG_THREAD:
		fprintf(f, " id=%u tid=%" PRIu64 " name=", rec->id, p->threads[rec->id].tid);
		put_str(f, p->threads[rec->id].name);
		break;
	case MR_TAG_THREAD_NAME:
		fprintf(f, " id=%u name=", rec->id);
		put_str(f, p->threads[rec->id].name);
		break;
	case MR_TAG_THREAD_SWITCH:
		fprintf(f, " thread=%u", rec->id);
		break;
	case MR_TAG_MODULE_LOAD:
		dump_module(f, p, rec->id);
		break;
	case MR_TAG_MODULE_UNLOAD:
		fprintf(f, " id=%u", rec->id);
		break;
	case MR_TAG_MEMORY:
		fprintf(f, " time_us=%" PRIu64 " rss=%" PRIu64 " heap=%" PRIu64, rec->time_us,
			rec->rss, rec->heap);
		break;
	case MR_TAG_SIGNAL:
		fprintf(f, " signal=%u name=SIG%s", rec->id, mr_signal_name((int)rec->id));
		break;
	case MR_TAG_TRAILER:
	case MR_TAG_EXEC:
		fprintf(f, " time_us=%" PRIu64 " records=%" PRIu64 " allocs=%" PRIu64
			" frees=%" PRIu64 " bytes=%" PRIu64,
			p->trailer.time_us, p->trailer.n_records, p->trailer.n_allocs,
			p->trailer.n_frees, p->trailer.bytes_allocated);
		break;
	}
	fputc('\n', f);
}
