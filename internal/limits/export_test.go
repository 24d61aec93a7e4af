package limits

// HasKey reports whether the limiter holds state for the principal name
// (tool "") or for name × tool.
func (l *Limiter) HasKey(name, tool string) bool {
	s := l.principals.get(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	pe, ok := s.m[name]
	if !ok || tool == "" {
		return ok
	}
	_, ok = pe.tools[tool]
	return ok
}
