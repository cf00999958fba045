"""`python -m demo` (`make demo`): see `demo.run`."""

from demo.run import main

main()
