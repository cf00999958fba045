"""`python -m demo.synthetic` (`b1k-synthetic-dataset`)."""

import sys

from demo.synthetic import main

sys.exit(main())
