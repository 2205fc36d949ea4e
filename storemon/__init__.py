"""storemon: store uptime reports from a stream of polls."""
