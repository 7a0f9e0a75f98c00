package proxy

// hookFunc is a frameHooks whose onFrame is the function itself: it never
// asks to see every frame, has nothing to do after a frame, and never
// parks (tests of the frame loop alone).
type hookFunc func(typ byte, body []byte) (frameAction, []byte)

func (f hookFunc) inspectAll() bool { return false }

func (f hookFunc) onFrame(typ byte, body []byte, _ bool) (frameAction, []byte) { return f(typ, body) }

func (f hookFunc) afterFrame(byte) error { return nil }

func (f hookFunc) mayPark() bool { return false }
