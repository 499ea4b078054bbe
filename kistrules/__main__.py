"""`python -m kistrules ...`: the same CLI as the `kistrules` console script."""

from kistrules.cli import main

if __name__ == "__main__":
    main()
