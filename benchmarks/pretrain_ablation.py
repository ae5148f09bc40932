#!/usr/bin/env python
"""The SimLM paper's compute-matched pre-training ablation at small scale (see simlm_ir/train/ablation.py).

    python benchmarks/pretrain_ablation.py [--preset cpu|gpu|tiny]
"""

import sys

from simlm_ir.train.ablation import main

if __name__ == "__main__":
    sys.exit(main())
