"""Framings several protocols share (TPKT/COTP for S7comm, S7comm-plus, MMS and RDP; DCE/RPC headers for
DCE/RPC, OPC DA and PROFINET IO)."""
