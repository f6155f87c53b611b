"""Capture: pcap/pcapng files and live interfaces -> (ts_ns, linktype, frame bytes); nothing else."""
from .pcapfile import open_capture, CaptureReader

__all__ = ["open_capture", "CaptureReader"]
