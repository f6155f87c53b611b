"""OPC UA PubSub over MQTT (OPC 10000-14): JSON and UADP NetworkMessages on `opcua/<json|uadp>/...`."""
