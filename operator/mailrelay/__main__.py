import sys

from mailrelay.cli import main

sys.exit(main())
