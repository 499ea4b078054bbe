"""Calibrating a rulebook on a few annotated images: `kistrules tune` and `kistrules suggest`.

The language side only: given region properties and how each region's pixels
meet the expert's masks (`evidence`), grade many candidate parameter vectors at
once (`candidates`), search the numbers of a rulebook without touching its
structure (`search`), write the result back as a rulebook (`rewrite`), and
propose new rules for the expert to read (`suggest`). Running a model to get the
regions is kist_train's job (kist_train.tune).
"""
