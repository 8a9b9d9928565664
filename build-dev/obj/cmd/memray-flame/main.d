build-dev/obj/cmd/memray-flame/main.o: cmd/memray-flame/main.c \
 cmd/memray-flame/../../lib/collapse.h \
 cmd/memray-flame/../../lib/replay.h cmd/memray-flame/../../lib/live.h \
 cmd/memray-flame/../../lib/stream.h \
 cmd/memray-flame/../../lib/symbolize.h \
 cmd/memray-flame/../../lib/folded.h cmd/memray-flame/../../lib/ingest.h \
 cmd/memray-flame/../../lib/input.h cmd/memray-flame/../../lib/util.h \
 build-dev/gen/flame_page.h
cmd/memray-flame/../../lib/collapse.h:
cmd/memray-flame/../../lib/replay.h:
cmd/memray-flame/../../lib/live.h:
cmd/memray-flame/../../lib/stream.h:
cmd/memray-flame/../../lib/symbolize.h:
cmd/memray-flame/../../lib/folded.h:
cmd/memray-flame/../../lib/ingest.h:
cmd/memray-flame/../../lib/input.h:
cmd/memray-flame/../../lib/util.h:
build-dev/gen/flame_page.h:
