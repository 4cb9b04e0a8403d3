"""Everything that talks to the Docker engine and builds images."""
