"""`python -m kist_train train ...`: the kistrules CLI, so torchrun can launch training.

`torchrun --nproc-per-node N -m kist_train train --data ... --out ...` runs N DDP
processes (kist_train.distributed); each parses the very same options as
`kistrules train`, and errors are the CLI's one-line messages.
"""

from kistrules.cli import main

if __name__ == "__main__":
    main()
