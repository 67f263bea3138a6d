import sys

from deepfake_stream.cli import main

sys.exit(main())
