"""Ways alerts reach Wardline besides Teams: MLLP (HL7 v2) and a signed JSON webhook."""
