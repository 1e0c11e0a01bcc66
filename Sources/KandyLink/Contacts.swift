import Foundation
import KandyLinkProtocol
import Synchronization

/// `kandy.contacts`: the user's personal address book on the platform, and a local copy of it.
///
/// ```swift
/// try await kandy.contacts.add(Contact(contactId: "bob", primaryContact: "bob@example.com", firstName: "Bob"))
/// let all = try await kandy.contacts.refresh()
/// ```
///
/// Each operation returns when the platform answered, or throws a ``KandyError``
/// (`users:2`, or `users:4` for a contact it would refuse, without a request), and emits the
/// Kandy.js events: `contacts:new`, `contacts:change`, `contacts:error`.
public struct Contacts: Sendable {
    let session: KandySession
    let observers: KandySession.Observers
    let known = Known()

    final class Known: Sendable {
        let contacts = Mutex<[String: Contact]>([:])
    }

    /// Adds `contact`; `contacts:new`. An id the address book has already is refused (48).
    public func add(_ contact: Contact) async throws {
        try await perform("add contact") {
            try Self.check(contact)
            _ = try await session.request(
                "POST", LinkPath.contacts(user:), body: AddressBookRequestDocument(contact),
                as: AddressBookResponseDocument.self, failure: .contactsFailure, verb: "add contact")
            known.contacts.withLock { $0[contact.contactId] = contact }
            observers.emit(.contactsNew(contact))
        }
    }

    /// Replaces the contact with `contact.contactId`; `contacts:change`.
    public func update(_ contact: Contact) async throws {
        try await perform("update contact") {
            try Self.check(contact)
            _ = try await session.request(
                "PUT", { LinkPath.contact(user: $0, id: contact.contactId) }, body: AddressBookRequestDocument(contact),
                as: AddressBookResponseDocument.self, failure: .contactsFailure, verb: "update contact")
            known.contacts.withLock { $0[contact.contactId] = contact }
            observers.emit(.contactsChange)
        }
    }

    /// Removes the contact; `contacts:change`.
    public func remove(_ contactId: String) async throws {
        try await perform("remove contact") {
            try Self.check(id: contactId)
            _ = try await session.request(
                "DELETE", { LinkPath.contact(user: $0, id: contactId) }, as: AddressBookResponseDocument.self,
                failure: .contactsFailure, verb: "remove contact")
            known.contacts.withLock { _ = $0.removeValue(forKey: contactId) }
            observers.emit(.contactsChange)
        }
    }

    /// Replaces the local copy with the platform's address book; `contacts:change`.
    @discardableResult
    public func refresh() async throws -> [Contact] {
        try await perform("refresh contacts") {
            let answer = try await session.request(
                "GET", LinkPath.addressBook(user:), as: AddressBookResponseDocument.self, failure: .contactsFailure,
                verb: "refresh contacts")
            let contacts = answer.addressBookResponse.addressBookEntries ?? []
            known.contacts.withLock { known in
                known = Dictionary(contacts.map { ($0.contactId, $0) }, uniquingKeysWith: { $1 })
            }
            observers.emit(.contactsChange)
            return contacts
        }
    }

    /// Fetches one contact from the platform into the local copy; `contacts:change`.
    @discardableResult
    public func fetch(_ contactId: String) async throws -> Contact {
        try await perform("fetch contact") {
            try Self.check(id: contactId)
            let answer = try await session.request(
                "GET", { LinkPath.contact(user: $0, id: contactId) }, as: AddressBookResponseDocument.self,
                failure: .contactsFailure, verb: "fetch contact")
            guard let contact = answer.addressBookResponse.addressBookEntries?.first else {
                throw KandyError(.contactsFailure, "Failed to fetch contact: the platform's answer has no entry.")
            }
            known.contacts.withLock { $0[contact.contactId] = contact }
            observers.emit(.contactsChange)
            return contact
        }
    }

    /// The local copy of one contact.
    public func get(_ contactId: String) -> Contact? { known.contacts.withLock { $0[contactId] } }

    /// The local copy of the address book, by contact id.
    public func getAll() -> [Contact] { known.contacts.withLock { $0.values.sorted { $0.contactId < $1.contactId } } }

    private func perform<T>(_ verb: String, _ work: () async throws -> T) async throws -> T {
        do {
            return try await work()
        } catch {
            let error = error as? KandyError ?? KandyError(.contactsFailure, "Failed to \(verb): \(error).")
            observers.emit(.contactsError(error))
            throw error
        }
    }

    /// What the platform would refuse, refused here without a request.
    static func check(_ contact: Contact) throws(KandyError) {
        try check(id: contact.contactId)
        if let field = contact.textFields.first(where: { ($0.value?.utf8.count ?? 0) > Contact.maxFieldBytes }) {
            throw KandyError(.invalidUserParameter, "\(field.name) is at most \(Contact.maxFieldBytes) bytes.")
        }
    }

    static func check(id: String) throws(KandyError) {
        guard Contact.isAcceptableID(id) else {
            throw KandyError(
                .invalidUserParameter,
                "A contact id is 1–\(Contact.maxContactIDBytes) bytes without '/', '\\' or control characters.")
        }
    }
}
