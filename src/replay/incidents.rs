//! Incidents: from labels, or inferred from the traffic by the [`IncidentRule`](super::IncidentRule).
