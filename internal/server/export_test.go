package server

// CloseSessions ends every MCP session, for test cleanup.
func (s *Server) CloseSessions() { s.closeSessions() }

// ConsoleSessions returns the number of console sessions held.
func (s *Server) ConsoleSessions() int { return s.sessions.len() }
