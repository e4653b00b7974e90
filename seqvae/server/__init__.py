"""The OSC server: any OSC-speaking tool asks for melodies and gets them back in milliseconds.

`SeqvaeServer(engine, ServerConfig(...)).start()` serves UDP and TCP on one port; the address
table is `seqvae.server.protocol.ROUTES`, documented for people in server/PROTOCOL.md.
"""

from seqvae.server.server import DEFAULT_HOST, DEFAULT_PORT, SeqvaeServer, ServerConfig

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "SeqvaeServer", "ServerConfig"]
