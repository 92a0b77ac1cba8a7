"""The ground floor: small helpers every app may use; they import no app."""
