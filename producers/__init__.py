"""Replay producers: dataset rows into a TCP socket or a Kafka topic, shuffled, looping, at a rate."""
