"""``python -m trustmarl`` runs the command line (see ``trustmarl.experiment.cli``)."""

import sys

from trustmarl.experiment.cli import main

sys.exit(main())
