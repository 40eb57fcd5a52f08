// Host memory for outputs. The Python layer allocates every output fresh
// (torch.empty / numpy.empty), and an allocation of 32 MiB or more is always a
// fresh mmap in glibc: its first write takes one page fault per 4 KiB, which
// for a memory-bound op (pooling, relu, the backward passes) costs more than
// the op itself. Asking for transparent huge pages on such an output before
// the kernel writes it makes that one fault per 2 MiB. Advice only: it changes
// no data, and where huge pages are off or the call fails nothing happens.
#pragma once
#include <cstddef>

namespace fastconv::cpu {

// Outputs at least this large get the advice (below it glibc mostly reuses
// heap memory that is already mapped, and splitting the heap mapping into
// differently-advised pieces would only fragment it).
constexpr std::size_t kHugePageAdviceBytes = std::size_t(32) << 20;

// madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside [p, p + bytes) when
// bytes >= kHugePageAdviceBytes; a no-op elsewhere (and off Linux).
void advise_huge_pages(void* p, std::size_t bytes);

}  // namespace fastconv::cpu
