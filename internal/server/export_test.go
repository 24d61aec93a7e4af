package server

// CloseSessions ends every MCP session, for test cleanup.
func (s *Server) CloseSessions() { s.closeSessions() }
