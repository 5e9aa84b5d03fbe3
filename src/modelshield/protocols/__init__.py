"""Wire codecs: oip_v2 and v1 (instances/predictions)."""
