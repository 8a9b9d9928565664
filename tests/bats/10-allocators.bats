#!/usr/bin/env bats
# Every interposed allocator, recorded with its own name, size and address.

load helper

@test "each malloc-family allocator with 984 bytes gives one event of that allocator and a free of its address" {
	for a in malloc calloc realloc reallocarray posix_memalign aligned_alloc memalign valloc pvalloc; do
		memray-record -q -o $a.bin "$FIX/allocs" alloc $a > $a.out
		addr=$(cat $a.out)
		run events $a $a.bin 984
		[ "${#lines[@]}" -eq 1 ] || { echo "$a: ${#lines[@]} events"; echo "$output"; false; }
		[ "$(echo "$output" | field size)" = 984 ] || { echo "$a: $output"; false; }
		[ "$(echo "$output" | field addr)" = "$addr" ] || { echo "$a: $output vs $addr"; false; }
		dump $a.bin | grep -q " free free addr=$addr " || { echo "$a: no free of $addr"; false; }
	done
}

@test "realloc that moves a block is one move event from the old address to the new" {
	memray-record -q -o r.bin "$FIX/allocs" realloc-move > r.out
	old=$(sed -n 1p r.out) new=$(sed -n 2p r.out)
	run events realloc r.bin
	assert_output --partial "move realloc old=$old addr=$new size=98400"
	dump r.bin | grep -q " free free addr=$new "
}

@test "C++ new and delete are seen as malloc and free, vector growth as matched pairs" {
	memray-record -q -o cxx.bin "$FIX/cxx_new" > cxx.out
	addr=$(cat cxx.out)
	run bash -c "memray-stat --dump cxx.bin | grep ' alloc malloc addr=$addr size=984 '"
	assert_success
	dump cxx.bin | grep -q " free free addr=$addr "
	# every block the vector grew into was freed again
	dump cxx.bin | awk '$3 == "alloc" { a[$5] = 1 } $3 == "free" { sub("addr=", "", $5); f["addr=" $5] = 1 }
		END { for (k in a) if (!(k in f)) n++; exit n > 2 }'
}

@test "mmap of 2 pages then munmap is one mmap and one munmap of that range" {
	memray-record -q -o m.bin "$FIX/allocs" mmap > m.out
	addr=$(cat m.out) P=$(getconf PAGE_SIZE)
	dump m.bin | grep -q " alloc mmap addr=$addr size=$((2 * P)) "
	dump m.bin | grep -q " free munmap addr=$addr size=$((2 * P)) "
}

@test "a partial munmap of the first and last page of a 4-page mapping is recorded as such" {
	memray-record -q -o p.bin "$FIX/allocs" munmap-partial > p.out
	addr=$(cat p.out) P=$(getconf PAGE_SIZE)
	run bash -c "memray-stat --dump p.bin | awk '\$4 == \"mmap\" || \$4 == \"munmap\"' | cut -d' ' -f3-6"
	assert_output "alloc mmap addr=$addr size=$((4 * P))
free munmap addr=$addr size=$P
free munmap addr=$(printf '0x%x' $((addr + 3 * P))) size=$P
free munmap addr=$(printf '0x%x' $((addr + P))) size=$((2 * P))"
}

@test "mremap is one move event carrying both lengths" {
	memray-record -q -o mr.bin "$FIX/allocs" mremap > mr.out
	old=$(sed -n 1p mr.out) new=$(sed -n 2p mr.out) P=$(getconf PAGE_SIZE)
	dump mr.bin | grep -q " move mremap old=$old old_size=$P addr=$new size=$((64 * P)) "
}

@test "memray-stat totals replay partial unmaps: peak and live bytes" {
	memray-record -q -o p.bin "$FIX/allocs" munmap-partial > /dev/null
	run memray-stat p.bin
	assert_success
	assert_output --partial "allocations:"
	assert_output --partial "peak heap:"
	assert_output --partial "live at end:"
}

@test "free() keeps errno while eight threads contend for the tracker's lock" {
	for i in 1 2 3; do
		run memray-record -q -f -o e.bin "$FIX/allocs" errno-free
		assert_success
		assert_output "free() changed errno 0 times"
	done
	memray-stat e.bin | grep -q "^frees: *[0-9]\{6\}"
}
