import { useEffect, useId, useMemo, useReducer, useRef, useState } from "react";

// A booking form for guided walks: choose a walk, a date from the available ones, the number of
// adults and children, and contact details. Prices come from the walk; availability is loaded per
// walk. The form validates on blur and on submit, and keeps focus management accessible.

export interface Walk {
  id: string;
  name: string;
  durationHours: number;
  difficulty: "easy" | "moderate" | "challenging";
  adultPrice: number; // in cents
  childPrice: number; // in cents
  minAge: number;
  maxGroupSize: number;
}

export interface Slot {
  date: string; // calendar date as returned by the availability endpoint
  startsAt: string; // local start time, such as "09:30"
  placesLeft: number;
}

export interface BookingRequest {
  walkId: string;
  date: string;
  startsAt: string;
  adults: number;
  children: number;
  name: string;
  email: string;
  phone: string;
  notes: string;
}

interface Props {
  walks: Walk[];
  loadSlots: (walkId: string, signal: AbortSignal) => Promise<Slot[]>;
  submit: (request: BookingRequest) => Promise<{ reference: string }>;
  currency?: string;
}

type Field = "walk" | "slot" | "people" | "name" | "email" | "phone";

interface State {
  walkId: string;
  slotKey: string;
  adults: number;
  children: number;
  name: string;
  email: string;
  phone: string;
  notes: string;
  touched: Partial<Record<Field, boolean>>;
}

type Action =
  | { type: "set"; field: keyof Omit<State, "touched">; value: string | number }
  | { type: "touch"; field: Field }
  | { type: "touchAll" }
  | { type: "reset" };

const initialState: State = {
  walkId: "",
  slotKey: "",
  adults: 1,
  children: 0,
  name: "",
  email: "",
  phone: "",
  notes: "",
  touched: {},
};

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case "set": {
      const next = { ...state, [action.field]: action.value };
      if (action.field === "walkId") next.slotKey = "";
      return next;
    }
    case "touch":
      return { ...state, touched: { ...state.touched, [action.field]: true } };
    case "touchAll":
      return {
        ...state,
        touched: { walk: true, slot: true, people: true, name: true, email: true, phone: true },
      };
    case "reset":
      return initialState;
  }
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const PHONE = /^\+?[0-9 ()-]{7,20}$/;

function validate(state: State, walk: Walk | undefined, slot: Slot | undefined) {
  const errors: Partial<Record<Field, string>> = {};
  if (!walk) errors.walk = "Choose a walk.";
  if (walk && !slot) errors.slot = "Choose a date and time.";
  const people = state.adults + state.children;
  if (state.adults < 1) errors.people = "At least one adult must come on every walk.";
  else if (walk && people > walk.maxGroupSize)
    errors.people = `This walk takes at most ${walk.maxGroupSize} people per booking.`;
  else if (slot && people > slot.placesLeft)
    errors.people = `Only ${slot.placesLeft} places are left at this time.`;
  if (!state.name.trim()) errors.name = "Enter the name for the booking.";
  if (!EMAIL.test(state.email.trim())) errors.email = "Enter an email address like name@example.org.";
  if (state.phone.trim() && !PHONE.test(state.phone.trim()))
    errors.phone = "Enter a phone number with digits, spaces and an optional leading plus sign.";
  return errors;
}

function formatPrice(cents: number, currency: string): string {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
}

export function BookingForm({ walks, loadSlots, submit, currency = "EUR" }: Props) {
  const [state, dispatch] = useReducer(reducer, initialState);
  const [slots, setSlots] = useState<Slot[] | null>(null);
  const [slotError, setSlotError] = useState<string | null>(null);
  const [status, setStatus] = useState<"idle" | "sending" | "done" | "failed">("idle");
  const [reference, setReference] = useState<string | null>(null);
  const summaryRef = useRef<HTMLDivElement>(null);
  const formId = useId();

  const walk = walks.find((w) => w.id === state.walkId);
  const slot = slots?.find((s) => `${s.date} ${s.startsAt}` === state.slotKey);
  const errors = useMemo(() => validate(state, walk, slot), [state, walk, slot]);
  const total = walk ? state.adults * walk.adultPrice + state.children * walk.childPrice : 0;

  useEffect(() => {
    if (!state.walkId) {
      setSlots(null);
      return;
    }
    const controller = new AbortController();
    setSlots(null);
    setSlotError(null);
    loadSlots(state.walkId, controller.signal)
      .then((loaded) => setSlots(loaded.filter((s) => s.placesLeft > 0)))
      .catch((error: unknown) => {
        if (controller.signal.aborted) return;
        setSlotError("We could not load the dates for this walk. Please try again.");
        console.warn("loading slots failed", error);
      });
    return () => controller.abort();
  }, [state.walkId, loadSlots]);

  const show = (field: Field) => (state.touched[field] ? errors[field] : undefined);

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    dispatch({ type: "touchAll" });
    if (Object.keys(errors).length > 0 || !walk || !slot) {
      summaryRef.current?.focus();
      return;
    }
    setStatus("sending");
    try {
      const result = await submit({
        walkId: walk.id,
        date: slot.date,
        startsAt: slot.startsAt,
        adults: state.adults,
        children: state.children,
        name: state.name.trim(),
        email: state.email.trim(),
        phone: state.phone.trim(),
        notes: state.notes.trim(),
      });
      setReference(result.reference);
      setStatus("done");
      dispatch({ type: "reset" });
    } catch {
      setStatus("failed");
    }
  }

  if (status === "done" && reference) {
    return (
      <div role="status" className="booking-confirmation">
        <h2>Thank you, your walk is booked</h2>
        <p>
          Your booking reference is <strong>{reference}</strong>. We have sent the details and the
          meeting point to your email address.
        </p>
        <button type="button" onClick={() => setStatus("idle")}>
          Book another walk
        </button>
      </div>
    );
  }

  const visibleErrors = Object.entries(errors).filter(([field]) => state.touched[field as Field]);

  return (
    <form onSubmit={onSubmit} noValidate aria-labelledby={`${formId}-title`}>
      <h2 id={`${formId}-title`}>Book a guided walk</h2>

      {visibleErrors.length > 0 && (
        <div ref={summaryRef} tabIndex={-1} role="alert" className="error-summary">
          <p>Please check the following:</p>
          <ul>
            {visibleErrors.map(([field, message]) => (
              <li key={field}>
                <a href={`#${formId}-${field}`}>{message}</a>
              </li>
            ))}
          </ul>
        </div>
      )}

      <label htmlFor={`${formId}-walk`}>Walk</label>
      <select
        id={`${formId}-walk`}
        value={state.walkId}
        onChange={(e) => dispatch({ type: "set", field: "walkId", value: e.target.value })}
        onBlur={() => dispatch({ type: "touch", field: "walk" })}
        aria-invalid={Boolean(show("walk"))}
      >
        <option value="">Choose a walk</option>
        {walks.map((w) => (
          <option key={w.id} value={w.id}>
            {w.name} ({w.durationHours} h, {w.difficulty})
          </option>
        ))}
      </select>
      {show("walk") && <p className="field-error">{show("walk")}</p>}

      {walk && (
        <fieldset>
          <legend>Date and time</legend>
          {slotError && <p className="field-error">{slotError}</p>}
          {!slotError && slots === null && <p aria-live="polite">Loading available dates…</p>}
          {slots?.length === 0 && <p>There are no free places on this walk at the moment.</p>}
          {slots?.map((s) => {
            const key = `${s.date} ${s.startsAt}`;
            return (
              <label key={key} className="slot">
                <input
                  type="radio"
                  name={`${formId}-slot`}
                  id={key === state.slotKey ? `${formId}-slot` : undefined}
                  value={key}
                  checked={key === state.slotKey}
                  onChange={() => dispatch({ type: "set", field: "slotKey", value: key })}
                  onBlur={() => dispatch({ type: "touch", field: "slot" })}
                />
                {s.date}, {s.startsAt} ({s.placesLeft} places left)
              </label>
            );
          })}
          {show("slot") && <p className="field-error">{show("slot")}</p>}
        </fieldset>
      )}

      <fieldset id={`${formId}-people`}>
        <legend>People</legend>
        <label>
          Adults
          <input
            type="number"
            min={1}
            max={walk?.maxGroupSize ?? 20}
            value={state.adults}
            onChange={(e) => dispatch({ type: "set", field: "adults", value: Number(e.target.value) })}
            onBlur={() => dispatch({ type: "touch", field: "people" })}
          />
        </label>
        <label>
          Children{walk ? ` (aged ${walk.minAge} and over)` : ""}
          <input
            type="number"
            min={0}
            max={walk?.maxGroupSize ?? 20}
            value={state.children}
            onChange={(e) => dispatch({ type: "set", field: "children", value: Number(e.target.value) })}
            onBlur={() => dispatch({ type: "touch", field: "people" })}
          />
        </label>
        {show("people") && <p className="field-error">{show("people")}</p>}
      </fieldset>

      <label htmlFor={`${formId}-name`}>Name for the booking</label>
      <input
        id={`${formId}-name`}
        autoComplete="name"
        value={state.name}
        onChange={(e) => dispatch({ type: "set", field: "name", value: e.target.value })}
        onBlur={() => dispatch({ type: "touch", field: "name" })}
      />
      {show("name") && <p className="field-error">{show("name")}</p>}

      <label htmlFor={`${formId}-email`}>Email</label>
      <input
        id={`${formId}-email`}
        type="email"
        autoComplete="email"
        value={state.email}
        onChange={(e) => dispatch({ type: "set", field: "email", value: e.target.value })}
        onBlur={() => dispatch({ type: "touch", field: "email" })}
      />
      {show("email") && <p className="field-error">{show("email")}</p>}

      <label htmlFor={`${formId}-phone`}>Phone (optional, for changes on the day)</label>
      <input
        id={`${formId}-phone`}
        type="tel"
        autoComplete="tel"
        value={state.phone}
        onChange={(e) => dispatch({ type: "set", field: "phone", value: e.target.value })}
        onBlur={() => dispatch({ type: "touch", field: "phone" })}
      />
      {show("phone") && <p className="field-error">{show("phone")}</p>}

      <label htmlFor={`${formId}-notes`}>Anything we should know? (optional)</label>
      <textarea
        id={`${formId}-notes`}
        rows={3}
        maxLength={500}
        value={state.notes}
        onChange={(e) => dispatch({ type: "set", field: "notes", value: e.target.value })}
      />

      <p className="total" aria-live="polite">
        Total: <strong>{formatPrice(total, currency)}</strong>
      </p>

      {status === "failed" && (
        <p role="alert" className="form-error">
          Sorry, the booking did not go through. Nothing has been charged. Please try again.
        </p>
      )}

      <button type="submit" disabled={status === "sending"}>
        {status === "sending" ? "Booking…" : "Book now"}
      </button>
    </form>
  );
}
