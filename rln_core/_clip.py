"""The margin of the clip decision, shared by the fast implementations.

Spec step 4 clips a lambda at its cap log|W / D|. Where a lambda ends within
rounding of its cap, two correct implementations can decide differently: their
logs differ by an ulp, and their means of the lambdas by the order of the sum
(about 1e-16 * mean |lambda| * a small factor). Deciding differently matters
in one direction only: a weight the reference clips lands on exactly 0, and
that must hold everywhere.

So the numba kernel and the torch-native kernel also clip lambdas up to
CLIP_MARGIN * (1 + |cap|) below their cap. While the rounding differences stay
below that margin (|lambdas| up to ~1e5; training keeps them near Theta), every
weight the reference sets to 0 is 0 there too. An element only they clip gets
the cap as its lambda (off by at most the margin, 100x below the 1e-9
tolerance) and lands on 0 instead of a residue of at most about the margin
times |W|, also within tolerance. The reference itself decides exactly.
"""

CLIP_MARGIN = 1e-11
