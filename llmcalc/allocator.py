"""A model of PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp, default settings).

Given the order in which a workload allocates and frees tensors, it reproduces the segments the
allocator reserves from the driver, and so its peak reserved memory: the part of nvidia-smi's
figure that `max_memory_allocated` does not show. The rules (PyTorch 2.x, no PYTORCH_CUDA_ALLOC_CONF):

- a request is rounded up to a multiple of 512 B (at least 512 B);
- requests up to 1 MiB come from the small pool, whose segments are 2 MiB; larger requests come
  from the large pool, whose segments are 20 MiB for requests under 10 MiB and otherwise the
  request rounded up to a multiple of 2 MiB;
- a request takes the smallest cached free block of its pool that is large enough (ties: the
  lower address); only when none is, a new segment is reserved (cudaMalloc);
- the block is split when what is left is at least 512 B (small pool) or more than 1 MiB (large
  pool); otherwise the request keeps the whole block;
- a freed block merges with free neighbours of its own segment and stays cached: segments are
  only released by empty_cache() or when cudaMalloc fails, which the workloads modelled here
  never reach.

With expandable segments (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, `expandable=True`)
each pool has one segment that grows by mapping pages (2 MiB small, 20 MiB large) at its end,
merged with its last block when that is free, and any block is split when 512 B or more remain.

Fragmentation follows: a freed segment serves later requests only through its own free blocks, so
a large request can reserve a new segment while the cached free bytes would cover it in sum.
Checked against PyTorch's own traces in benchmarks/allocator_trace.py (replay).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

MIN_BLOCK = 512  # kMinBlockSize
SMALL_SIZE = 1 << 20  # kSmallSize: requests up to this come from the small pool
SMALL_BUFFER = 2 << 20  # kSmallBuffer: small-pool segment
LARGE_BUFFER = 20 << 20  # kLargeBuffer: large-pool segment for requests under MIN_LARGE_ALLOC
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge


def round_size(nbytes: int) -> int:
    """The block size a request of `nbytes` takes: a multiple of 512 B, at least 512 B."""
    return MIN_BLOCK if nbytes < MIN_BLOCK else -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def segment_size(size: int) -> int:
    """The segment reserved for a (rounded) request that no cached block can serve."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-size // ROUND_LARGE) * ROUND_LARGE


@dataclass(eq=False)
class _Block:
    addr: int
    size: int
    small: bool
    free: bool = True
    prev: _Block | None = None
    next: _Block | None = None


@dataclass
class CachingAllocator:
    """Replays mallocs and frees; `peak_reserved` and `peak_allocated` are PyTorch's
    `max_memory_reserved()` and `max_memory_allocated()` for the same sequence."""

    reserved: int = 0
    allocated: int = 0
    peak_reserved: int = 0
    peak_allocated: int = 0
    segments: int = 0
    _pools: dict[bool, list[tuple[int, int]]] = field(default_factory=lambda: {True: [], False: []})
    _blocks: dict[int, _Block] = field(default_factory=dict)  # by address, every block
    # Where the next segment goes. The driver's addresses decide ties between equal free blocks
    # (the lower address wins); new segments are placed below the earlier ones, which matched
    # PyTorch's choices in more recorded traces than placing them above.
    _next_addr: int = 1 << 48
    addresses: list[int] = field(default_factory=list)  # the driver's addresses, when replaying a trace
    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: one segment per pool, grown by mapping pages
    expandable: bool = False
    _heads: dict[bool, _Block] = field(default_factory=dict)  # the first block of each pool's segment

    def add_segment(self, size: int, small: bool) -> _Block:
        """Reserve a segment of `size` bytes (one free block)."""
        if self.expandable and small in self._heads:
            self._map(size, small)
            return self._heads[small]
        if self.addresses:
            addr = self.addresses.pop(0)
        else:
            self._next_addr -= -(-size // ROUND_LARGE) * ROUND_LARGE
            addr = self._next_addr
        block = _Block(addr, size, small)
        self._blocks[block.addr] = block
        self.reserved += size
        self.segments += 1
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        insort(self._pools[small], (size, block.addr))
        if self.expandable:
            self._heads[small] = block
        return block

    def _map(self, size: int, small: bool) -> None:
        """Expandable segments: map pages (2 MiB in the small pool, 20 MiB in the large) at the
        end of the pool's segment, merged with its last block when that is free, so that one
        free block holds `size` bytes. No page is unmapped before empty_cache()."""
        page = SMALL_BUFFER if small else LARGE_BUFFER
        head = self._heads.get(small)
        if head is None:
            self.add_segment(-(-size // page) * page, small)
            return
        last = head
        while last.next is not None:
            last = last.next
        pages = -(-(size - (last.size if last.free else 0)) // page) * page
        self.reserved += pages
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        pool = self._pools[small]
        if last.free:
            pool.pop(bisect_left(pool, (last.size, last.addr)))
            last.size += pages
            insort(pool, (last.size, last.addr))
        else:
            block = _Block(last.addr + last.size, pages, small, prev=last)
            last.next = block
            self._blocks[block.addr] = block
            insort(pool, (pages, block.addr))

    def malloc(self, nbytes: int) -> int:
        """Allocate `nbytes`; returns the block's address (the handle for `free`)."""
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self._pools[small]
        i = bisect_left(pool, (size, -1))
        if i == len(pool):
            if self.expandable:
                self._map(size, small)
            else:
                self.add_segment(segment_size(size), small)
            i = bisect_left(pool, (size, -1))
        _, addr = pool.pop(i)
        block = self._blocks[addr]
        rest = block.size - size
        # expandable segments split any block (PyTorch: should_split); else a large block only
        # when more than 1 MiB would remain
        if rest >= MIN_BLOCK if (small or self.expandable) else rest > SMALL_SIZE:
            tail = _Block(addr + size, rest, small, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            self._blocks[tail.addr] = tail
            insort(pool, (rest, tail.addr))
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return addr

    def free(self, addr: int) -> None:
        """Return a block to its pool, merged with free neighbours of the same segment."""
        block = self._blocks[addr]
        if block.free:
            raise ValueError(f"double free of block {addr:#x}")
        self.allocated -= block.size
        block.free = True
        pool = self._pools[block.small]
        for other in (block.prev, block.next):
            if other is not None and other.free:
                pool.pop(bisect_left(pool, (other.size, other.addr)))
                del self._blocks[other.addr if other is block.next else block.addr]
                if other is block.next:
                    block.size += other.size
                    block.next = other.next
                    if other.next is not None:
                        other.next.prev = block
                else:
                    other.size += block.size
                    other.next = block.next
                    if block.next is not None:
                        block.next.prev = other
                    block = other
        insort(pool, (block.size, block.addr))
