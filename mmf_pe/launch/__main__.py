import sys

from mmf_pe.launch.cli import main

sys.exit(main())
