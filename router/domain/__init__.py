"""What the router decides: intake, validation, planning, item states, correlation,
corrections, withdrawal, deadlines and working days, and read views."""
