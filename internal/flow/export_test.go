package flow

// Len returns the number of keys t holds, expired ones included.
func (t *Tracker) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// ShardBounds returns the MaxKeys share of each shard.
func (t *Tracker) ShardBounds() []int {
	var out []int
	for i := range t.shards {
		out = append(out, t.shards[i].max)
	}
	return out
}
