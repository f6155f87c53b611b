"""Plant simulator: real Modbus/TCP, OPC UA and MQTT peers on loopback, recorded with tcpdump.

HMIs poll pymodbus PLCs on schedules, an asyncua client reads and writes an asyncua server, paho-mqtt
sensors publish through Debian's mosquitto to a subscriber. Changes (a new master, writes to new registers,
out-of-band values, a changed polling period, a new MQTT topic, a new OPC UA node written) can be injected
at given times; each injected change is written as a labelled row (time range, hosts, expected rule) next
to the capture. Everything runs in a private network namespace so the capture holds only the plant.

Usage: `python -m sim record --help` (sim/README.md). The baseline tests and the ML work reuse it.
"""
