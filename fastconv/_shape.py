"""The output-size formula of the notes, defined once.

    out = floor((in + 2P - D(F - 1) - 1) / S) + 1

(the notes' W2 = (W1 - F + 2P) / S + 1 with dilation D added). With ceil_mode
the division rounds up, and, as in torch, a last window that would start
beyond the input and its left padding is dropped. Works on ints and on torch's
symbolic sizes (used by the fake implementations under torch.compile).
"""
from __future__ import annotations

from typing import Sequence, Union

IntOrSeq = Union[int, Sequence[int]]


def _one(size, kernel_size, stride, padding, dilation, ceil_mode):
    span = size + 2 * padding - dilation * (kernel_size - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = (span + stride - 1) // stride + 1
    if (out - 1) * stride >= size + padding:
        out = out - 1
    return out


def conv_output_size(size: IntOrSeq, kernel_size: IntOrSeq, stride: IntOrSeq = 1, padding: IntOrSeq = 0,
                     dilation: IntOrSeq = 1, ceil_mode: bool = False):
    """Output extent of a convolution or pooling window sliding over ``size``.

    Every argument may be an int or a sequence (one entry per spatial dimension);
    a sequence in gives a tuple out. A result below 1 means the window does not fit.

    >>> conv_output_size(227, 11, stride=4)      # AlexNet conv1
    55
    >>> conv_output_size((32, 32), 5)            # LeNet-5 C1
    (28, 28)
    """
    if not isinstance(size, (tuple, list)) and not isinstance(kernel_size, (tuple, list)) and not isinstance(
            stride, (tuple, list)) and not isinstance(padding, (tuple, list)) and not isinstance(dilation, (tuple, list)):
        return _one(size, kernel_size, stride, padding, dilation, ceil_mode)
    args = [size, kernel_size, stride, padding, dilation]
    seqs = [a for a in args if isinstance(a, (tuple, list))]
    if not seqs:
        return _one(size, kernel_size, stride, padding, dilation, ceil_mode)
    n = len(seqs[0])
    if any(len(a) != n for a in seqs):
        raise ValueError(f"conv_output_size: arguments have different lengths: {args}")
    expand = [a if isinstance(a, (tuple, list)) else (a,) * n for a in args]
    return tuple(_one(*vals, ceil_mode) for vals in zip(*expand))
