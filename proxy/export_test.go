package proxy

// OnSessionEnd lets tests wait for a session to be fully gone; set it before
// Serve.
func OnSessionEnd(s *Server, f func(SessionInfo)) { s.sessionEnded = f }
